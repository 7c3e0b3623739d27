//! Binding a token to the workload that presents it. A token carrying a SPIFFE ID
//! (Keycloak's `azp` for a SPIFFE-authenticated client, or a mapper claim) was issued to
//! that workload: whoever proved another SPIFFE ID may not use it. A certificate-bound
//! token (RFC 8705 `cnf["x5t#S256"]`) may only come over the TLS connection of that
//! certificate.

use std::sync::Arc;

use serde_json::Value;

use crate::context::{IdentitySource, PeerIdentity, PeerSvid, SpiffeIdentity, VerifiedToken};
use crate::identity::parse_spiffe_id;

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("the token's {claim} is not a valid SPIFFE ID")]
    InvalidClaim { claim: String },
    #[error("the token belongs to {token}, the caller proved {caller}")]
    Mismatch { token: String, caller: String },
    #[error("the token is bound to a client certificate and the connection has none")]
    NoCertificate,
    #[error("the token is bound to another client certificate")]
    Certificate,
}

impl BindingError {
    pub fn reason(&self) -> &'static str {
        match self {
            BindingError::InvalidClaim { .. } => "token_spiffe_id_invalid",
            BindingError::Mismatch { .. } => "token_spiffe_id_mismatch",
            BindingError::NoCertificate => "token_x5t_no_certificate",
            BindingError::Certificate => "token_x5t_mismatch",
        }
    }
}

/// The caller's identity once `token` is known. `claim` names the token claim that
/// carries a SPIFFE ID (`None`: tokens carry none); only values that start with
/// `spiffe://` count, so an ordinary client ID in `azp` binds nothing.
///
/// 1. `cnf["x5t#S256"]`, when present, equals the client certificate's thumbprint.
/// 2. The token's SPIFFE ID, when present, equals the identity the caller proved (mTLS,
///    JWT-SVID, or the pod's own for a loopback caller);
/// 3. or, when the caller proved none, becomes the caller's identity (source `token`).
pub fn bind(
    identity: PeerIdentity,
    token: &VerifiedToken,
    claim: Option<&str>,
    peer_svid: Option<&Arc<PeerSvid>>,
) -> Result<PeerIdentity, BindingError> {
    // 1. Certificate binding.
    if let Some(x5t) = token.claims().pointer("/cnf/x5t#S256") {
        let svid = peer_svid.ok_or(BindingError::NoCertificate)?;
        if x5t.as_str() != Some(&*svid.x5t_s256) {
            return Err(BindingError::Certificate);
        }
    }
    let Some(claim) = claim else { return Ok(identity) };
    let Some(value) = token.claims().get(claim).and_then(Value::as_str).filter(|v| v.starts_with("spiffe://")) else {
        return Ok(identity);
    };
    let token_id: SpiffeIdentity = parse_spiffe_id(value, IdentitySource::Token)
        .map_err(|_| BindingError::InvalidClaim { claim: claim.to_owned() })?;
    match identity {
        // 2. Both proved: one workload.
        PeerIdentity::Spiffe(caller) if caller.spiffe_id != token_id.spiffe_id => {
            Err(BindingError::Mismatch { token: token_id.spiffe_id.to_string(), caller: caller.spiffe_id.to_string() })
        }
        PeerIdentity::Spiffe(caller) => Ok(PeerIdentity::Spiffe(caller)),
        // 3. The token is the only proof.
        PeerIdentity::Anonymous => Ok(PeerIdentity::Spiffe(token_id)),
    }
}
