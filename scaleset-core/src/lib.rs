//! Pure scaling decisions and lifecycle state machines for runner scale sets.
