'use strict';

const { url } = require('./client');

// Custom auth: the Tollgate address and an admin API key; GET /api/me tests them and names the
// connection after the project.
module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'base_url',
      label: 'Base URL',
      required: true,
      type: 'string',
      helpText: 'The address of your Tollgate, e.g. `https://tollgate.example.com`.',
    },
    {
      key: 'api_key',
      label: 'API key',
      required: true,
      type: 'password',
      helpText: 'An **admin** key, made on the API keys page of the Tollgate admin.',
    },
  ],
  test: async (z, bundle) => (await z.request({ url: url(bundle, '/me') })).data,
  connectionLabel: (z, bundle) => `${bundle.inputData.project_name} (${bundle.inputData.project})`,
};
