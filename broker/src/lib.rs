//! The Fjord broker.
