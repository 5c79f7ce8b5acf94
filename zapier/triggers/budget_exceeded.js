'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'budget_exceeded',
  noun: 'Budget',
  label: 'Budget Exceeded',
  description: "Triggers when a customer's $ budget for the period is used up.",
  type: 'budget.exceeded',
  sample: sampleEvent('budget.exceeded', { scope: 'total', spend_usd: '50.000000000', max_budget_usd: '50.000000000' }),
});
