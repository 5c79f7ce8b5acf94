'use strict';

const { create, customerId, customerPath, sampleCustomer, send } = require('./common');

module.exports = create(
  'block_customer',
  'Customer',
  'Block Customer',
  "Blocks a customer: its calls are refused until it is unblocked.",
  [customerId],
  (z, bundle) => send(z, bundle, 'PATCH', customerPath(bundle), { blocked: true }),
  { ...sampleCustomer, blocked: true },
);
