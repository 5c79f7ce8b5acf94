'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'customer_awaiting_approval',
  noun: 'Customer',
  label: 'Customer Awaiting Approval',
  description: 'Triggers when a customer is created with no tokens: approve it to give it access.',
  type: 'customer.awaiting_approval',
  sample: sampleEvent('customer.awaiting_approval', { name: 'Acme' }),
});
