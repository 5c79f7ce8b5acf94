'use strict';

// The Zapier app driven by zapier-platform-core's app tester against a running Tollgate (issue 11,
// acceptance 4): `tests/test_zapier.py` starts one and runs `npm test` here with
// TOLLGATE_URL (its root) and TOLLGATE_API_KEY (an admin key of its project `default`).

const assert = require('node:assert/strict');
const { before, describe, it } = require('node:test');
const zapier = require('zapier-platform-core');
const { prepareApp, validateApp } = require('zapier-platform-core/src/tools/schema');

const App = require('../index');

const appTester = zapier.createAppTester(App);
const base = process.env.TOLLGATE_URL;
const apiKey = process.env.TOLLGATE_API_KEY;
const authData = { base_url: base, api_key: apiKey };
const run = (operation, inputData = {}, extra = {}) => appTester(operation, { authData, inputData, ...extra });
const unique = (name) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

const api = async (method, path, body) => {
  const response = await fetch(`${base}/api${path}`, {
    method,
    headers: { Authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
};

before(() => {
  assert.ok(base && apiKey, 'TOLLGATE_URL and TOLLGATE_API_KEY name the Tollgate to test against');
});

describe('the app definition', () => {
  it('validates against zapier-platform-schema, offline', () => {
    assert.deepEqual(validateApp(prepareApp(App)), []);
  });

  it('has the keys SPEC 7.3 names', () => {
    assert.deepEqual(Object.keys(App.triggers).sort(), [
      'budget_exceeded',
      'customer_awaiting_approval',
      'new_customer',
      'purchase_completed',
      'tokens_exhausted',
      'tokens_low',
      'usage_limit_reached',
    ]);
    assert.deepEqual(Object.keys(App.creates).sort(), [
      'add_tokens',
      'approve_customer',
      'block_customer',
      'change_tier',
      'create_customer',
      'set_balance',
      'unblock_customer',
    ]);
    assert.deepEqual(Object.keys(App.searches), ['find_customer']);
    assert.deepEqual(App.authentication.fields.map((f) => f.key), ['base_url', 'api_key']);
  });
});

describe('authentication', () => {
  it('tests the connection with GET /api/me and names it after the project', async () => {
    const me = await run(App.authentication.test);
    assert.equal(me.project, 'default');
    assert.equal(me.scope, 'admin');
    const label = App.authentication.connectionLabel(null, { inputData: me });
    assert.equal(label, `${me.project_name} (default)`);
  });

  it('asks to reconnect when the key is refused (401)', async () => {
    await assert.rejects(
      appTester(App.authentication.test, { authData: { base_url: base, api_key: 'tg-not-a-key-0000000000' } }),
      (error) => error.name === 'ExpiredAuthError',
    );
  });
});

describe('triggers', () => {
  for (const [key, trigger] of Object.entries(App.triggers)) {
    it(`${key}: subscribes a REST hook, unsubscribes it, lists recent events`, async () => {
      const target = `http://127.0.0.1:9/${unique(key)}`; // loopback: no name to resolve
      const subscribed = await run(trigger.operation.performSubscribe, {}, { targetUrl: target });
      assert.match(subscribed.id, /^hook_/);
      assert.match(subscribed.secret, /^whsec_/);
      let hooks = (await api('GET', '/hooks?limit=200')).body.data;
      const mine = hooks.find((h) => h.id === subscribed.id);
      assert.equal(mine.target_url, target);
      assert.equal(mine.events.length, 1);
      const unsubscribed = await run(trigger.operation.performUnsubscribe, {}, { subscribeData: subscribed });
      assert.deepEqual(unsubscribed, {});
      hooks = (await api('GET', '/hooks?limit=200')).body.data;
      assert.equal(hooks.find((h) => h.id === subscribed.id), undefined);

      const listed = await run(trigger.operation.performList);
      assert.ok(Array.isArray(listed));
      for (const item of listed) {
        assert.match(item.id, /^evt_/);
        assert.equal(item.type, mine.events[0]);
      }
      const sample = trigger.operation.sample;
      assert.equal(sample.type, mine.events[0]);
    });
  }

  it('new_customer: a delivered event becomes one flat item; the list has the newest first', async () => {
    const created = unique('zap-new');
    await api('POST', '/customers', { customer_id: created, name: 'Zap New' });
    const listed = await run(App.triggers.new_customer.operation.performList);
    assert.equal(listed[0].customer_id, created);
    assert.equal(listed[0].name, 'Zap New');
    const event = (await api('GET', '/events?type=customer.created&limit=1')).body.data[0];
    const [item] = await run(App.triggers.new_customer.operation.perform, {}, { cleanedRequest: event });
    assert.equal(item.id, event.id);
    assert.equal(item.customer_id, created);
    assert.equal(item.token_balance, event.data.token_balance);
  });

  it('purchase_completed: a Stripe purchase is one flat item, with what was bought', async () => {
    const buyer = process.env.TOLLGATE_PURCHASE_CUSTOMER;
    assert.ok(buyer, 'tests/test_zapier.py makes a Stripe purchase first and names its customer');
    const listed = await run(App.triggers.purchase_completed.operation.performList);
    const item = listed.find((found) => found.customer_id === buyer);
    assert.ok(item, JSON.stringify(listed));
    assert.equal(item.type, 'purchase.completed');
    assert.equal(item.tokens, 12345);
    assert.match(item.purchase, /^cs_/);
    assert.match(item.stripe_event_id, /^evt_/);
    const sample = App.triggers.purchase_completed.operation.sample;
    assert.deepEqual(Object.keys(item).sort(), Object.keys(sample).sort()); // the sample shows the real fields
  });

  it('customer_awaiting_approval: lists customers made with no tokens', async () => {
    const waiting = unique('zap-wait');
    await api('POST', '/customers', { customer_id: waiting, token_balance: 0 });
    const listed = await run(App.triggers.customer_awaiting_approval.operation.performList);
    assert.ok(listed.some((item) => item.customer_id === waiting));
  });
});

describe('creates', () => {
  let customer;

  before(async () => {
    customer = unique('zap-acme');
    const tier = await api('POST', '/tiers', { key: 'zapier-pro', name: 'Pro' });
    assert.ok([201, 409].includes(tier.status), JSON.stringify(tier.body));
  });

  it('create_customer: with its tokens and tier', async () => {
    const made = await run(App.creates.create_customer.operation.perform, {
      customer_id: customer,
      name: 'Acme',
      email: `${customer}@acme.example`,
      tokens: '2500',
      tier: 'default',
    });
    assert.equal(made.customer_id, customer);
    assert.equal(made.token_balance, 2500);
    assert.equal(made.email, `${customer}@acme.example`);
  });

  it('add_tokens and set_balance: ledger entries with the reason', async () => {
    const added = await run(App.creates.add_tokens.operation.perform, { customer_id: customer, tokens: 500, reason: 'bonus' });
    assert.deepEqual([added.kind, added.amount, added.balance_after, added.reason], ['adjustment', 500, 3000, 'bonus']);
    const set = await run(App.creates.set_balance.operation.perform, { customer_id: customer, balance: 10000 });
    assert.deepEqual([set.kind, set.balance_after, set.reason], ['set_balance', 10000, 'Zapier']);
  });

  it('change_tier: to a tier by its key', async () => {
    const moved = await run(App.creates.change_tier.operation.perform, { customer_id: customer, tier: 'zapier-pro' });
    assert.equal(moved.tier.key, 'zapier-pro');
  });

  it('block_customer and unblock_customer', async () => {
    assert.equal((await run(App.creates.block_customer.operation.perform, { customer_id: customer })).blocked, true);
    assert.equal((await run(App.creates.unblock_customer.operation.perform, { customer_id: customer })).blocked, false);
  });

  it('approve_customer: credits a customer awaiting approval, once', async () => {
    const waiting = unique('zap-approve');
    await api('POST', '/customers', { customer_id: waiting, token_balance: 0 });
    const approved = await run(App.creates.approve_customer.operation.perform, { customer_id: waiting, tokens: 700 });
    assert.deepEqual([approved.amount, approved.reason], [700, 'approved']);
    await assert.rejects(
      run(App.creates.approve_customer.operation.perform, { customer_id: waiting, tokens: 700 }),
      (error) => error.name === 'AppError' && JSON.parse(error.message).status === 409,
    );
  });

  it('errors name what Tollgate refused', async () => {
    await assert.rejects(
      run(App.creates.add_tokens.operation.perform, { customer_id: unique('nobody'), tokens: 5 }),
      (error) => {
        const detail = JSON.parse(error.message);
        return detail.status === 404 && /customer/.test(detail.message);
      },
    );
    await assert.rejects(
      run(App.creates.create_customer.operation.perform, { customer_id: customer }),
      (error) => {
        const detail = JSON.parse(error.message);
        return detail.status === 409 && /\(customer_id\)$/.test(detail.message);
      },
    );
  });
});

describe('find_customer', () => {
  it('finds by id or email, [] when none; find-or-create creates it', async () => {
    const id = unique('zap-find');
    const email = `${id}@find.example`;
    assert.deepEqual(await run(App.searches.find_customer.operation.perform, { customer_id: id }), []);
    const key = App.searchOrCreates.find_customer;
    assert.equal(key.search, 'find_customer');
    assert.equal(key.create, 'create_customer');
    const made = await run(App.creates[key.create].operation.perform, { customer_id: id, email });
    assert.equal(made.customer_id, id);
    const [byId] = await run(App.searches.find_customer.operation.perform, { customer_id: id });
    const [byEmail] = await run(App.searches.find_customer.operation.perform, { email });
    assert.equal(byId.customer_id, id);
    assert.equal(byEmail.customer_id, id);
  });
});
