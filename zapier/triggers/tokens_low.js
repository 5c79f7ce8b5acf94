'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'tokens_low',
  noun: 'Balance',
  label: 'Tokens Low',
  description: "Triggers when a customer's balance falls below the project's low-balance threshold.",
  type: 'tokens.low',
  sample: sampleEvent('tokens.low', { token_balance: 900, threshold: 1000 }),
});
