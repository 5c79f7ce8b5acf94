'use strict';

const { create, customerId, customerPath, sampleCustomer, send } = require('./common');

module.exports = create(
  'unblock_customer',
  'Customer',
  'Unblock Customer',
  'Unblocks a customer.',
  [customerId],
  (z, bundle) => send(z, bundle, 'PATCH', customerPath(bundle), { blocked: false }),
  sampleCustomer,
);
