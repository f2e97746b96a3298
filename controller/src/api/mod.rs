//! The REST API under `/v1`: a thin axum layer over the store, actual state and the converger.

mod apps;
mod auth;
mod bits;
mod error;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use nimbus_protocol::api::Info;

pub use error::ApiError;

use crate::actual::ActualState;
use crate::config::Config;
use crate::converge::Converger;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    pub actual: ActualState,
    pub converger: Converger,
    pub nats: async_nats::Client,
    pub config: Arc<Config>,
}

/// The API's routes; everything but `/v1/info` needs a token.
pub fn router(ctx: Ctx) -> Router {
    let authenticated = Router::new()
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route(
            "/v1/apps/{app}",
            get(apps::show).patch(apps::update).delete(apps::delete),
        )
        .route("/v1/apps/{app}/start", post(apps::start))
        .route("/v1/apps/{app}/stop", post(apps::stop))
        .route("/v1/apps/{app}/instances", get(apps::instances))
        .route("/v1/apps/{app}/logs", get(apps::recent_logs))
        .route("/v1/apps/{app}/events", get(apps::recent_events))
        .route("/v1/apps/{app}/droplet", get(apps::droplet))
        .route(
            "/v1/apps/{app}/bits",
            put(bits::upload).layer(DefaultBodyLimit::max(ctx.config.max_package_bytes)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/v1/info", get(info))
        .merge(authenticated)
        .fallback(error::not_found)
        .with_state(ctx)
}

async fn info(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Json<Info> {
    Json(Info {
        name: "nimbus".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: 1,
        domain: ctx.config.domain.clone(),
        app_url_template: ctx.config.url_of("{host}"),
    })
}
