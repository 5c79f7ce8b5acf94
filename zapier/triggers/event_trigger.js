'use strict';

// One trigger per Tollgate event type (SPEC 7.1, 7.3): a REST hook (POST/DELETE /api/hooks) with a
// polling fallback (GET /api/events?type=…, newest first, `id` = the event id, which Zapier dedupes
// on). Items are the event with its data flattened beside it, for Zapier's field mapping.

const { url } = require('../client');

const flatten = (event) => {
  const item = {
    id: event.id,
    type: event.type,
    created_at: event.created_at,
    project: event.project,
    customer_id: event.customer_id,
  };
  for (const [name, value] of Object.entries(event.data || {})) {
    if (!(name in item)) {
      item[name] = value;
    }
  }
  return item;
};

const eventTrigger = ({ key, noun, label, description, type, sample }) => ({
  key,
  noun,
  display: { label, description },
  operation: {
    type: 'hook',
    performSubscribe: async (z, bundle) =>
      (
        await z.request({
          url: url(bundle, '/hooks'),
          method: 'POST',
          body: { target_url: bundle.targetUrl, event: type },
        })
      ).data,
    performUnsubscribe: async (z, bundle) => {
      await z.request({ url: url(bundle, `/hooks/${encodeURIComponent(bundle.subscribeData.id)}`), method: 'DELETE' });
      return {};
    },
    perform: (z, bundle) => [flatten(bundle.cleanedRequest)],
    performList: async (z, bundle) => {
      const response = await z.request({ url: url(bundle, '/events'), params: { type, limit: 25 } });
      return response.data.data.map(flatten);
    },
    sample: flatten(sample),
  },
});

// A sample event of `type` for Zapier's field mapping when no real one exists yet.
const sampleEvent = (type, data) => ({
  id: 'evt_0123456789abcdef01234567',
  type,
  created_at: '2026-12-01T12:00:00Z',
  project: 'default',
  customer_id: 'acme',
  data: { customer_id: 'acme', ...data },
});

module.exports = { eventTrigger, flatten, sampleEvent };
