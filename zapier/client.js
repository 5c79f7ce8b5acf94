'use strict';

// How the app talks to Tollgate's management API (SPEC 6, 7.3): every request carries the admin
// key; errors become Zapier's (401: the connection must be re-authenticated, 429: Zapier retries
// after Retry-After, which zapier-platform-core raises before this runs; any other 4xx: a message
// naming the field Tollgate refused).

const url = (bundle, path) => `${String(bundle.authData.base_url).replace(/\/+$/, '')}/api${path}`;

const addApiKey = (request, z, bundle) => {
  request.headers = request.headers || {};
  if (bundle.authData && bundle.authData.api_key) {
    request.headers.Authorization = `Bearer ${bundle.authData.api_key}`;
  }
  request.headers.Accept = 'application/json';
  return request;
};

const explainErrors = (response, z) => {
  if (response.status === 401) {
    throw new z.errors.ExpiredAuthError('Tollgate refused the API key: connect the account again with an admin key.');
  }
  if (response.status >= 400 && !response.skipThrowForStatus) {
    let error = {};
    try {
      error = (response.json || JSON.parse(response.content)).error || {};
    } catch (e) {
      error = {};
    }
    const field = error.param ? ` (${error.param})` : '';
    const message = `${error.message || `Tollgate answered ${response.status}`}${field}`;
    throw new z.errors.Error(message, error.code || String(response.status), response.status);
  }
  return response;
};

module.exports = { url, addApiKey, explainErrors };
