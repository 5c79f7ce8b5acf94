'use strict';

const { eventTrigger, sampleEvent } = require('./event_trigger');

module.exports = eventTrigger({
  key: 'usage_limit_reached',
  noun: 'Usage Limit',
  label: 'Usage Limit Reached',
  description: "Triggers when a customer reaches its usage tier's call or token limit in a period.",
  type: 'usage.limit_reached',
  sample: sampleEvent('usage.limit_reached', { scope: 'premium', calls: 500, tokens: 120000 }),
});
