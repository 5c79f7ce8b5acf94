'use strict';

const { url } = require('../client');
const { sampleCustomer } = require('../creates/common');

// Find a customer by its id or its email (GET /api/customers?customer_id=|email=): [] when none.
module.exports = {
  key: 'find_customer',
  noun: 'Customer',
  display: { label: 'Find Customer', description: 'Finds a customer by its ID or its email.' },
  operation: {
    inputFields: [
      { key: 'customer_id', label: 'Customer ID', helpText: 'Give this or the email.' },
      { key: 'email', label: 'Email' },
    ],
    perform: async (z, bundle) => {
      const params = {};
      if (bundle.inputData.customer_id) {
        params.customer_id = bundle.inputData.customer_id;
      } else if (bundle.inputData.email) {
        params.email = bundle.inputData.email;
      } else {
        throw new z.errors.Error('Give a customer ID or an email to search by.', 'invalid_request', 400);
      }
      return (await z.request({ url: url(bundle, '/customers'), params })).data.data;
    },
    sample: sampleCustomer,
  },
};
