//! `PUT /v1/apps/{app}/bits`: upload a package (a `.wasm` or a source archive) and stream its
//! staging as newline-delimited JSON [`StagingEvent`]s.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use nimbus_protocol::api::StagingEvent;
use nimbus_protocol::droplet::package_object_name;
use tokio::sync::mpsc;

use super::apps::find;
use super::{ApiError, Ctx};
use crate::store::sha256_hex;

pub async fn upload(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    package: Bytes,
) -> Result<Response, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    if package.is_empty() {
        return Err(ApiError::bad_request(
            "the package is empty: push a .wasm file or a source directory",
        ));
    }
    let sha = sha256_hex(&package);
    let (events, receiver) = mpsc::channel(256);
    if app.package_sha256.as_deref() == Some(sha.as_str())
        && let Some(droplet) = app.droplet.clone()
    {
        // Unchanged bits: the droplet staged from them is still good.
        let _ = events.try_send(StagingEvent::Staged {
            droplet,
            reused: true,
            duration_ms: 0,
        });
    } else {
        ctx.store
            .put_blob(&package_object_name(&sha), &package)
            .await?;
        tokio::spawn(crate::staging::stage(ctx.clone(), app, sha, events));
    }
    let lines = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        let mut line = nimbus_protocol::encode(&event);
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
            receiver,
        ))
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
