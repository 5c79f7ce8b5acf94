'use strict';

// Tollgate for Zapier (SPEC 7.3): triggers on Tollgate's events (REST hooks, with polling), actions
// on its customers, tokens and tiers, and a customer search with "create if not found".

const { version } = require('./package.json');
const { version: platformVersion } = require('zapier-platform-core');
const authentication = require('./authentication');
const { addApiKey, explainErrors } = require('./client');
const triggers = require('./triggers');
const creates = require('./creates');
const findCustomer = require('./searches/find_customer');

module.exports = {
  version,
  platformVersion,
  authentication,
  beforeRequest: [addApiKey],
  afterResponse: [explainErrors],
  triggers,
  creates,
  searches: { [findCustomer.key]: findCustomer },
  searchOrCreates: {
    find_customer: {
      key: 'find_customer',
      display: {
        label: 'Find or Create Customer',
        description: 'Finds a customer by its ID or email; creates it when none is found.',
      },
      search: 'find_customer',
      create: 'create_customer',
    },
  },
};
