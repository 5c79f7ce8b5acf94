'use strict';

// One file per trigger (SPEC 7.3).
const triggers = [
  require('./new_customer'),
  require('./customer_awaiting_approval'),
  require('./tokens_low'),
  require('./tokens_exhausted'),
  require('./usage_limit_reached'),
  require('./budget_exceeded'),
  require('./purchase_completed'),
];

module.exports = Object.fromEntries(triggers.map((t) => [t.key, t]));
