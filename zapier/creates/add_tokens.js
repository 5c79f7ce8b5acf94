'use strict';

const { create, customerId, customerPath, sampleEntry, send, whole } = require('./common');

module.exports = create(
  'add_tokens',
  'Tokens',
  'Add Tokens',
  "Adds tokens to a customer's balance (negative takes them back), with a reason in its ledger.",
  [customerId, { key: 'tokens', label: 'Tokens', type: 'integer', required: true }, { key: 'reason', label: 'Reason' }],
  (z, bundle) =>
    send(z, bundle, 'POST', `${customerPath(bundle)}/tokens`, {
      amount: whole(bundle.inputData.tokens, 'tokens'),
      mode: 'add',
      reason: bundle.inputData.reason || 'Zapier',
    }),
  sampleEntry,
);
