'use strict';

const { create, customerId, customerPath, sampleCustomer, send, whole } = require('./common');

module.exports = create(
  'change_tier',
  'Tier',
  'Change Tier',
  'Moves a customer to a usage tier (its latest version unless one is given).',
  [
    customerId,
    { key: 'tier', label: 'Usage tier', required: true, helpText: 'A tier key, e.g. `pro`.' },
    { key: 'version', label: 'Version', type: 'integer' },
  ],
  (z, bundle) => {
    const body = { tier: bundle.inputData.tier };
    const version = whole(bundle.inputData.version, 'version');
    if (version !== undefined) {
      body.version = version;
    }
    return send(z, bundle, 'POST', `${customerPath(bundle)}/tier`, body);
  },
  sampleCustomer,
);
