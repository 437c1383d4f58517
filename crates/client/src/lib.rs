//! Agent-side anonymous statistics: consent, events, delivery.
