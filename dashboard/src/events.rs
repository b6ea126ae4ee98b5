//! `GET /api/events` (server-sent events: a snapshot every second, membership and job events
//! as they come) and `GET /api/stats` (the sample history).

use super::{problem_kind, Api};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

/// `GET /api/events`: the live stream, or 503 when `--http-max-streams` are open. It ends
/// when the node stops, so that the server can.
pub async fn events(State(api): State<Api>) -> Response {
    let Ok(permit) = api.streams.clone().try_acquire_owned() else {
        let why = format!(
            "this node serves at most {} event streams at once (--http-max-streams); try again later",
            api.max_streams
        );
        return problem_kind(StatusCode::SERVICE_UNAVAILABLE, "overloaded", why);
    };
    stream(api, permit).into_response()
}

/// The event stream, holding its permit until the client goes or the node stops.
fn stream(
    api: Api,
    permit: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let snapshots = WatchStream::new(api.live.latest.clone()).filter_map(|p| async move {
        (!p.json.is_empty()).then(|| Ok(Event::default().event("snapshot").data(&p.json)))
    });
    // A client too slow for the bus events misses some; the next snapshot has their effect.
    let bus = BroadcastStream::new(api.live.events.subscribe()).filter_map(|e| async move {
        e.ok()
            .map(|(name, json)| Ok(Event::default().event(name).data(&*json)))
    });
    let stream = futures::stream::select(snapshots, bus)
        .take_until(api.shutdown.cancelled_owned())
        .map(move |e| {
            let _held = &permit;
            e
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /api/stats`: ten minutes of samples, oldest first.
pub async fn stats(State(api): State<Api>) -> Response {
    let latest = api.live.latest.borrow().clone();
    Json(serde_json::json!({ "samples": latest.history })).into_response()
}
