'use strict';

const { create, customerId, customerPath, sampleEntry, send, whole } = require('./common');

module.exports = create(
  'set_balance',
  'Balance',
  'Set Balance',
  "Sets a customer's token balance, with a reason in its ledger.",
  [customerId, { key: 'balance', label: 'Balance', type: 'integer', required: true }, { key: 'reason', label: 'Reason' }],
  (z, bundle) =>
    send(z, bundle, 'POST', `${customerPath(bundle)}/tokens`, {
      amount: whole(bundle.inputData.balance, 'balance'),
      mode: 'set',
      reason: bundle.inputData.reason || 'Zapier',
    }),
  { ...sampleEntry, kind: 'set_balance' },
);
