//! The Fjord client library.
