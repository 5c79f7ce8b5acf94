'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'new_customer',
  noun: 'Customer',
  label: 'New Customer',
  description: 'Triggers when a customer is created (on its first call, or by an action).',
  type: 'customer.created',
  sample: sampleEvent('customer.created', { name: 'Acme', token_balance: 10000 }),
});
