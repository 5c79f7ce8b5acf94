'use strict';

const { create, customerId, customerPath, sampleEntry, send, whole } = require('./common');

module.exports = create(
  'approve_customer',
  'Approval',
  'Approve Customer',
  "Credits a customer awaiting approval (the project's approval tokens unless an amount is given).",
  [customerId, { key: 'tokens', label: 'Tokens', type: 'integer' }],
  (z, bundle) => {
    const tokens = whole(bundle.inputData.tokens, 'tokens');
    return send(z, bundle, 'POST', `${customerPath(bundle)}/approve`, tokens === undefined ? {} : { tokens });
  },
  { ...sampleEntry, reason: 'approved' },
);
