'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'tokens_exhausted',
  noun: 'Balance',
  label: 'Tokens Exhausted',
  description: "Triggers when a customer's balance reaches zero.",
  type: 'tokens.exhausted',
  sample: sampleEvent('tokens.exhausted', { token_balance: 0 }),
});
