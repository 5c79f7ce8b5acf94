'use strict';

// One file per action (SPEC 7.3).
const creates = [
  require('./create_customer'),
  require('./add_tokens'),
  require('./set_balance'),
  require('./change_tier'),
  require('./approve_customer'),
  require('./block_customer'),
  require('./unblock_customer'),
];

module.exports = Object.fromEntries(creates.map((c) => [c.key, c]));
