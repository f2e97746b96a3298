//! App handlers: create, list, show, update, delete, start, stop, instances, recent logs.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use nimbus_protocol::api::{self, App, AppState, CreateApp, Instance, UpdateApp};
use nimbus_protocol::messages::{AppEvent, Health, InstanceState, LogMessage, StopRequest};
use nimbus_protocol::subjects;

use super::{ApiError, Ctx};
use crate::record::{self, AppRecord};
use crate::settings;

pub async fn list(State(ctx): State<Ctx>) -> Result<Json<Vec<App>>, ApiError> {
    let apps = ctx.store.apps().await?;
    Ok(Json(apps.iter().map(|app| view(&ctx, app)).collect()))
}

pub async fn create(
    State(ctx): State<Ctx>,
    body: Result<Json<CreateApp>, JsonRejection>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    let Json(request) = body?;
    api::validate_app_name(&request.name).map_err(ApiError::bad_request)?;
    let requested = request.settings();
    validate(&requested)?;
    let mut app = record::new_app(request.name, &ctx.config);
    settings::apply(&mut app, &requested);
    ctx.store.create_app(&app).await?;
    tracing::info!(app = %app.name, id = %app.id, "app created");
    Ok((StatusCode::CREATED, Json(view(&ctx, &app))))
}

pub async fn show(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Json<App>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    Ok(Json(view(&ctx, &app)))
}

pub async fn update(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    body: Result<Json<UpdateApp>, JsonRejection>,
) -> Result<Json<App>, ApiError> {
    let Json(request) = body?;
    validate(&request)?;
    let (app, _) = find(&ctx, &name).await?;
    let app = modify(&ctx, &app, |app| {
        settings::apply(app, &request);
        if !request.only_scales() {
            // Instances keep the settings they started with: roll to a new version.
            app.version = uuid::Uuid::new_v4();
        }
    })
    .await?;
    ctx.converger.kick(app.id);
    Ok(Json(view(&ctx, &app)))
}

pub async fn delete(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (app, revision) = find(&ctx, &name).await?;
    ctx.store.delete_app(&app, revision).await?;
    stop_all(&ctx, &app).await;
    tracing::info!(app = %app.name, "app deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn start(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<App>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    if app.droplet.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_staged",
            format!("app {name:?} has no droplet yet: push its bits first"),
        ));
    }
    let app = modify(&ctx, &app, |app| app.state = AppState::Started).await?;
    ctx.converger.kick(app.id);
    Ok(Json(view(&ctx, &app)))
}

pub async fn stop(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Json<App>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    let app = modify(&ctx, &app, |app| app.state = AppState::Stopped).await?;
    stop_all(&ctx, &app).await;
    Ok(Json(view(&ctx, &app)))
}

/// The instances DEAs run, and each wanted index none runs, with the health manager's word
/// on crashes.
pub async fn instances(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    let health = crate::health::of_app(&ctx.nats, app.id).await;
    let index_health = |index: u32| {
        health
            .as_ref()
            .and_then(|h| h.indices.iter().find(|i| i.index == index))
    };
    let mut instances: Vec<Instance> = ctx
        .actual
        .instances_of(app.id)
        .into_iter()
        .map(|r| {
            let current = r.instance.version == app.version;
            let crashes = index_health(r.instance.index).filter(|_| current);
            Instance {
                index: r.instance.index,
                state: match r.instance.state {
                    InstanceState::Running => Health::Running,
                    _ => Health::Starting,
                },
                current,
                crash_count: crashes.map_or(0, |c| c.crash_count),
                last_crash: crashes.and_then(|c| c.last_crash.clone()),
                restart_at: None,
                instance_id: Some(r.instance.instance_id),
                since: Some(r.instance.state_timestamp),
                host: Some(r.instance.host.clone()),
                port: Some(r.instance.port),
                dea: Some(r.dea),
            }
        })
        .collect();
    if app.should_run() {
        for index in 0..app.instances {
            if instances.iter().any(|i| i.current && i.index == index) {
                continue;
            }
            let known = index_health(index);
            instances.push(Instance {
                index,
                state: known.map_or(Health::Down, |k| k.health),
                current: true,
                crash_count: known.map_or(0, |k| k.crash_count),
                last_crash: known.and_then(|k| k.last_crash.clone()),
                restart_at: known.and_then(|k| k.restart_at),
                instance_id: None,
                since: None,
                host: None,
                port: None,
                dea: None,
            });
        }
    }
    instances.sort_by_key(|i| (i.index, !i.current));
    Ok(Json(instances))
}

/// The app's current droplet: the wasm DEAs run, as `cf download-droplet` gives it.
pub async fn droplet(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    let Some(droplet) = &app.droplet else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_staged",
            format!("app {name:?} has no droplet yet: push its bits first"),
        ));
    };
    let wasm = ctx.store.get_blob(&droplet.object_name()).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/wasm")],
        wasm,
    ))
}

pub async fn recent_events(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Vec<AppEvent>>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    Ok(Json(ctx.store.recent_events(app.id).await?))
}

pub async fn recent_logs(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Vec<LogMessage>>, ApiError> {
    let (app, _) = find(&ctx, &name).await?;
    Ok(Json(ctx.store.recent_logs(app.id).await?))
}

/// The app called `name`, or 404.
pub(super) async fn find(ctx: &Ctx, name: &str) -> Result<(AppRecord, u64), ApiError> {
    ctx.store
        .app_named(name)
        .await?
        .ok_or_else(|| ApiError::app_not_found(name))
}

/// Applies a change with compare-and-set; 404 if the app vanished meanwhile.
pub(super) async fn modify(
    ctx: &Ctx,
    app: &AppRecord,
    change: impl FnMut(&mut AppRecord),
) -> Result<AppRecord, ApiError> {
    ctx.store
        .modify_app(app.id, change)
        .await?
        .ok_or_else(|| ApiError::app_not_found(&app.name))
}

/// Rejects settings out of range.
fn validate(request: &UpdateApp) -> Result<(), ApiError> {
    settings::validate(request).map_err(ApiError::bad_request)
}

/// Tells every DEA to stop the app now, rather than at the next convergence pass.
async fn stop_all(ctx: &Ctx, app: &AppRecord) {
    let request = StopRequest {
        app_id: app.id,
        version: None,
        indices: None,
        instance_ids: None,
    };
    if let Err(error) = nimbus_bus::publish(&ctx.nats, subjects::DEA_STOP, &request).await {
        tracing::warn!(%error, app = %app.name, "failed to send a stop");
    }
    ctx.converger.kick(app.id);
}

pub(super) fn view(ctx: &Ctx, app: &AppRecord) -> App {
    record::to_api(
        app,
        ctx.actual.running_count(app.id, app.version),
        &ctx.config,
    )
}
