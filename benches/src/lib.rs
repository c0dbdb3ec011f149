//! Fjord benchmarks.
