'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'purchase_completed',
  noun: 'Purchase',
  label: 'Purchase Completed',
  description: 'Triggers when a Stripe purchase credits a customer.',
  type: 'purchase.completed',
  sample: sampleEvent('purchase.completed', { tokens: 100000, stripe_session_id: 'cs_test_a1b2c3' }),
});
