//! Client for GitHub's REST credential exchange and the Actions service's runner scale set APIs.
