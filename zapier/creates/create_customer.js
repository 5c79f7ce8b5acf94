'use strict';

const { create, customerId, sampleCustomer, send, whole } = require('./common');

module.exports = create(
  'create_customer',
  'Customer',
  'Create Customer',
  'Creates a customer with the project defaults, its tokens and tier if given.',
  [
    customerId,
    { key: 'name', label: 'Name' },
    { key: 'email', label: 'Email' },
    { key: 'tokens', label: 'Tokens', type: 'integer', helpText: "Initial balance; else the project's." },
    { key: 'tier', label: 'Usage tier', helpText: 'A tier key, e.g. `pro`; else the project default.' },
  ],
  (z, bundle) => {
    const body = { customer_id: bundle.inputData.customer_id };
    for (const name of ['name', 'email', 'tier']) {
      if (bundle.inputData[name]) {
        body[name] = bundle.inputData[name];
      }
    }
    const tokens = whole(bundle.inputData.tokens, 'tokens');
    if (tokens !== undefined) {
      body.token_balance = tokens;
    }
    return send(z, bundle, 'POST', '/customers', body);
  },
  sampleCustomer,
);
