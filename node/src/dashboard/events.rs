//! `GET /api/events` (server-sent events: a snapshot every second, membership and job events
//! as they come) and `GET /api/stats` (the sample history).

use super::Api;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

/// `GET /api/events`: the live stream. It ends when the node stops, so that the server can.
pub async fn events(State(api): State<Api>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let snapshots = WatchStream::new(api.live.latest.clone()).filter_map(|p| async move {
        (!p.json.is_empty()).then(|| Ok(Event::default().event("snapshot").data(&p.json)))
    });
    // A client too slow for the bus events misses some; the next snapshot has their effect.
    let bus = BroadcastStream::new(api.live.events.subscribe()).filter_map(|e| async move {
        e.ok()
            .map(|(name, json)| Ok(Event::default().event(name).data(&*json)))
    });
    let stream = futures::stream::select(snapshots, bus).take_until(api.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /api/stats`: ten minutes of samples, oldest first.
pub async fn stats(State(api): State<Api>) -> Response {
    let latest = api.live.latest.borrow().clone();
    Json(serde_json::json!({ "samples": latest.history })).into_response()
}
