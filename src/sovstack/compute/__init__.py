"""The compute exchange: empanelled providers and offers, subsidy programmes, requests and reviews,
an optimising allocator with concentration caps, usage and invoices, and the provider cut-off drill."""
