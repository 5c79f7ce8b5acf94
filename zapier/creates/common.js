'use strict';

// What the actions share (SPEC 7.3): each action is one call to /api, answering the customer (or
// the ledger entry).

const { url } = require('../client');

const customerPath = (bundle) => `/customers/${encodeURIComponent(bundle.inputData.customer_id)}`;
const customerId = {
  key: 'customer_id',
  label: 'Customer ID',
  required: true,
  helpText: "Your app's id for the customer.",
};
const sampleCustomer = {
  customer_id: 'acme',
  name: 'Acme',
  alias: null,
  email: 'ops@acme.example',
  token_balance: 10000,
  tier: { key: 'default', version: 1 },
  shedding_tier: 'middle',
  allowed_regions: [],
  blocked: false,
  spend_usd: '0.000000000',
  tokens_unbilled: 0,
  metadata: {},
  created_at: '2026-12-01T12:00:00Z',
  last_seen_at: null,
};
const sampleEntry = {
  id: 1,
  kind: 'adjustment',
  amount: 5000,
  balance_after: 15000,
  source: 'api',
  reason: 'Zapier',
  created_at: '2026-12-01T12:00:00Z',
};

const whole = (value, name) => {
  if (value === undefined || value === null || value === '') {
    return undefined;
  }
  const number = Number(value);
  if (!Number.isInteger(number)) {
    throw new Error(`${name} must be a whole number of tokens`);
  }
  return number;
};

const send = async (z, bundle, method, path, body) =>
  (await z.request({ url: url(bundle, path), method, body })).data;

const create = (key, noun, label, description, inputFields, perform, sample) => ({
  key,
  noun,
  display: { label, description },
  operation: { inputFields, perform, sample },
});

module.exports = { create, customerId, customerPath, sampleCustomer, sampleEntry, send, whole };
