'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'purchase_completed',
  noun: 'Purchase',
  label: 'Purchase Completed',
  description: 'Triggers when a Stripe purchase credits a customer.',
  type: 'purchase.completed',
  sample: sampleEvent('purchase.completed', {
    purchase: 'cs_test_a1b2c3',
    subscription: null,
    tokens: 100000,
    tier: { key: 'pro', version: 1 },
    amount_total: 2000,
    currency: 'usd',
    token_balance: 150000,
    stripe_event_id: 'evt_1Rp92IE2YllEOQrty5bxSwY3',
  }),
});
