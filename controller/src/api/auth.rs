//! Bearer-token authentication: tokens are stored as SHA-256 hashes in the tokens bucket.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use nimbus_protocol::api::BEARER;

use super::{ApiError, Ctx};
use crate::store::sha256_hex;

/// Lets a request through only with a known `Authorization: Bearer <token>`.
pub async fn require_token(
    State(ctx): State<Ctx>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing bearer token: log in or run `nimbus up` first")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix(BEARER))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    if ctx
        .store
        .token_user(&sha256_hex(token.as_bytes()))
        .await?
        .is_none()
    {
        return Err(ApiError::unauthorized("invalid token"));
    }
    Ok(next.run(request).await)
}
