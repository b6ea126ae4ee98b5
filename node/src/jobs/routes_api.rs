//! The model-routes operations of the jobs API: `routes`, `alias`, `rollout`, `promote` and
//! `rollback`. Each change is one compare-and-swap of the model's routes
//! ([`crate::cluster::routes`]): every node's watch sees the whole change or none of it. The
//! versions the routes name are pinned in SDFS before the routes name them (a version is
//! never pruned while named) and unpinned after they stop naming them.

use super::Ctx;
use crate::cluster::lease::now_ms;
use crate::cluster::routes::RoutesError;
use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::jobs::{JobsErrorKind, JobsReply, JobsRequest};
use bus_schemas::membership::MemberState;
use bus_schemas::models::{
    ArmFigures, ModelRoutes, Rollout, RolloutEnd, RoutesStatus, MAX_ALIASES,
};
use bus_schemas::subjects;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long the figures of the other nodes are waited for.
const FIGURES_WAIT: Duration = Duration::from_secs(2);

type Refusal = (JobsErrorKind, String);

/// Answers one routes request.
pub async fn handle(ctx: &Ctx, req: JobsRequest) -> JobsReply {
    let model = match &req {
        JobsRequest::Routes { model }
        | JobsRequest::Alias { model, .. }
        | JobsRequest::Rollout { model, .. }
        | JobsRequest::Promote { model, .. }
        | JobsRequest::Rollback { model, .. } => model.clone(),
        _ => return refuse((JobsErrorKind::BadRequest, "not a routes request".into())),
    };
    let changed = match req {
        JobsRequest::Routes { .. } => Ok(()),
        other => change(ctx, &model, other).await,
    };
    match changed {
        Ok(()) => match status(ctx, &model).await {
            Ok(status) => JobsReply::Routes {
                status: Box::new(status),
            },
            Err(e) => refuse(e),
        },
        Err(e) => refuse(e),
    }
}

fn refuse((kind, message): Refusal) -> JobsReply {
    JobsReply::Error { kind, message }
}

/// Checks and applies one change.
async fn change(ctx: &Ctx, model: &str, req: JobsRequest) -> Result<(), Refusal> {
    let bad = |e: bus_schemas::NameError| (JobsErrorKind::BadArgument, e.to_string());
    bus_schemas::validate_token(model).map_err(bad)?;
    let versions = versions(ctx, model).await?;
    let exists = |v: u64| {
        versions.contains(&v).then_some(()).ok_or_else(|| {
            let have: Vec<u64> = versions.iter().copied().collect();
            let why = format!("model {model:?} has no version {v} (it has {have:?})");
            (JobsErrorKind::UnknownModel, why)
        })
    };
    let (new, edit): (Option<u64>, Box<Edit>) = match req {
        JobsRequest::Alias { alias, version, .. } => {
            bus_schemas::validate_token(&alias).map_err(bad)?;
            version.map(exists).transpose()?;
            (version, Box::new(move |r| set_alias(r, &alias, version)))
        }
        JobsRequest::Rollout {
            alias,
            version,
            percent,
            ..
        } => {
            bus_schemas::validate_token(&alias).map_err(bad)?;
            exists(version)?;
            if !(percent > 0.0 && percent <= 100.0) {
                let why =
                    format!("the canary's share is above 0% and at most 100%, not {percent}%");
                return Err((JobsErrorKind::BadArgument, why));
            }
            let start = move |r: &mut ModelRoutes| start(r, &alias, version, percent);
            (Some(version), Box::new(start))
        }
        JobsRequest::Promote { alias, .. } => (None, Box::new(move |r| end(r, &alias, true))),
        JobsRequest::Rollback { alias, .. } => (None, Box::new(move |r| rollback(r, &alias))),
        _ => return Err((JobsErrorKind::BadRequest, "not a change of routes".into())),
    };
    apply(ctx, model, new, edit).await
}

type Edit = dyn FnMut(&mut ModelRoutes) -> Result<(), String> + Send;

/// Pins what the routes will name, writes them, then unpins what they no longer name. Pins
/// are added and removed, never set, and only the versions this change touched are unpinned
/// (those the routes, read again from the bucket's leader, do not name): a change made beside
/// it keeps its own pins.
async fn apply(
    ctx: &Ctx,
    model: &str,
    new: Option<u64>,
    mut edit: Box<Edit>,
) -> Result<(), Refusal> {
    let internal = |e: String| (JobsErrorKind::Internal, e);
    let named = || async {
        let read = ctx.routes_store.get(model).await;
        read.map(|(r, _)| r.named_versions())
            .map_err(|e| internal(e.to_string()))
    };
    let mut touched = named().await?;
    touched.extend(new);
    pin(ctx, model, &touched, &BTreeSet::new()).await?;
    let written = ctx.routes_store.modify(model, |r| edit(r)).await;
    let routes = written.map_err(|e| match e {
        RoutesError::Refused(why) => (JobsErrorKind::Conflict, why),
        other => internal(other.to_string()),
    });
    // Also after a refusal: the pin above may have pinned a version nothing names.
    let unpin: Result<BTreeSet<u64>, Refusal> = named()
        .await
        .map(|now| touched.difference(&now).copied().collect());
    let unpinned = match unpin {
        Ok(unpin) => pin(ctx, model, &BTreeSet::new(), &unpin).await,
        Err(e) => Err(e),
    };
    if let Err(e) = unpinned {
        tracing::warn!(%model, "versions no longer named stay pinned: {}", e.1);
    }
    let r = routes?;
    tracing::info!(%model, aliases = ?r.aliases, rollout = ?r.rollout, "model routes changed");
    Ok(())
}

async fn pin(
    ctx: &Ctx,
    model: &str,
    pin: &BTreeSet<u64>,
    unpin: &BTreeSet<u64>,
) -> Result<(), Refusal> {
    if pin.is_empty() && unpin.is_empty() {
        return Ok(());
    }
    let file = super::outputs::model_file(model);
    let (pin, unpin) = (
        pin.iter().copied().collect(),
        unpin.iter().copied().collect(),
    );
    let pinned = ctx.cache.sdfs().pin(&file, pin, unpin).await;
    pinned.map(|_| ()).map_err(|e| {
        let why = format!("cannot pin the versions of {file}: {e}");
        (JobsErrorKind::Internal, why)
    })
}

/// The versions SDFS keeps of `model` (refused if it has none).
async fn versions(ctx: &Ctx, model: &str) -> Result<BTreeSet<u64>, Refusal> {
    let file = super::outputs::model_file(model);
    let listed = ctx.cache.sdfs().ls(&file).await;
    let files = listed.map_err(|e| (JobsErrorKind::Internal, e.to_string()))?;
    let versions: BTreeSet<u64> = (files.iter())
        .filter(|f| f.name == file)
        .flat_map(|f| f.versions.iter().map(|v| v.version))
        .collect();
    if versions.is_empty() {
        let why = format!("unknown model {model:?} (see `idunno models`)");
        return Err((JobsErrorKind::UnknownModel, why));
    }
    Ok(versions)
}

/// Points `alias` at `version` (or removes it), remembering what it named.
fn set_alias(r: &mut ModelRoutes, alias: &str, version: Option<u64>) -> Result<(), String> {
    if r.rollout_on(alias).is_some() {
        return Err(format!(
            "a rollout runs on {}@{alias}: promote or roll it back first",
            r.model
        ));
    }
    let old = match version {
        Some(v) => {
            if !r.aliases.contains_key(alias) && r.aliases.len() >= MAX_ALIASES {
                return Err(format!("a model has at most {MAX_ALIASES} aliases"));
            }
            r.aliases.insert(alias.to_string(), v)
        }
        None => {
            r.previous.remove(alias);
            return match r.aliases.remove(alias) {
                Some(_) => Ok(()),
                None => Err(format!("model {:?} has no alias {alias:?}", r.model)),
            };
        }
    };
    if let Some(old) = old.filter(|o| Some(*o) != version) {
        r.previous.insert(alias.to_string(), old);
    }
    Ok(())
}

/// Starts a canary of `version` on `alias`.
fn start(r: &mut ModelRoutes, alias: &str, version: u64, percent: f64) -> Result<(), String> {
    if let Some(running) = &r.rollout {
        return Err(format!(
            "a rollout of version {} on {}@{} runs already: promote or roll it back first",
            running.canary, r.model, running.alias
        ));
    }
    let Some(baseline) = r.aliases.get(alias).copied() else {
        return Err(format!(
            "model {:?} has no alias {alias:?}: name the version it serves first (`idunno model alias {} {alias} <version>`)",
            r.model, r.model
        ));
    };
    if baseline == version {
        return Err(format!("{}@{alias} is version {version} already", r.model));
    }
    r.rollout = Some(Rollout {
        id: now_ms(),
        alias: alias.to_string(),
        baseline,
        canary: version,
        percent,
        ended: None,
    });
    Ok(())
}

/// Ends the rollout on `alias`: promoted (the alias names the canary) or rolled back.
fn end(r: &mut ModelRoutes, alias: &str, promoted: bool) -> Result<(), String> {
    let Some(mut rollout) = r.rollout.take_if(|x| x.alias == alias) else {
        return Err(format!("no rollout runs on {}@{alias}", r.model));
    };
    if promoted {
        r.aliases.insert(alias.to_string(), rollout.canary);
        r.previous.insert(alias.to_string(), rollout.baseline);
    }
    rollout.ended = Some(RolloutEnd {
        promoted,
        at_ms: now_ms(),
    });
    r.last_rollout = Some(rollout);
    Ok(())
}

/// Rolls back the rollout on `alias`, or with none, points the alias back at what it named
/// before its last change.
fn rollback(r: &mut ModelRoutes, alias: &str) -> Result<(), String> {
    if r.rollout_on(alias).is_some() {
        return end(r, alias, false);
    }
    let Some(previous) = r.previous.get(alias).copied() else {
        return Err(format!(
            "nothing to roll back: no rollout runs on {}@{alias} and it named no other version before",
            r.model
        ));
    };
    set_alias(r, alias, Some(previous))
}

/// The routes as the bucket's leader has them, the versions kept, and the figures of the
/// running (else the last) rollout summed over the nodes that answer.
async fn status(ctx: &Ctx, model: &str) -> Result<RoutesStatus, Refusal> {
    let internal = |e: String| (JobsErrorKind::Internal, e);
    let (routes, _) = (ctx.routes_store.get(model).await).map_err(|e| internal(e.to_string()))?;
    let versions = match versions(ctx, model).await {
        Ok(v) => v.into_iter().collect(),
        Err((JobsErrorKind::UnknownModel, _)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let shown = routes.rollout.as_ref().or(routes.last_rollout.as_ref());
    let (figures, nodes) = match shown {
        Some(r) => gather(ctx, model, r).await,
        None => (Vec::new(), Vec::new()),
    };
    Ok(RoutesStatus {
        routes,
        versions,
        figures,
        nodes,
    })
}

/// Every alive member's figures of `rollout`'s two arms, summed.
async fn gather(ctx: &Ctx, model: &str, rollout: &Rollout) -> (Vec<ArmFigures>, Vec<String>) {
    let view = ctx.membership.view().await.map(|v| v.members);
    let members: BTreeSet<String> = (view.unwrap_or_default().into_iter())
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.id)
        .collect();
    let req = ControlRequest::Rollout {
        model: model.to_string(),
    };
    let asks = members.iter().map(|id| {
        let subject = subjects::node_control(id, req.op());
        bus_client::request::<_, ControlReply>(&ctx.client, subject, &req, FIGURES_WAIT)
    });
    let mut sums: Vec<ArmFigures> = [
        bus_schemas::models::Arm::Baseline,
        bus_schemas::models::Arm::Canary,
    ]
    .into_iter()
    .map(|arm| ArmFigures {
        rollout: rollout.id,
        arm: Some(arm),
        version: rollout.version(arm),
        ..Default::default()
    })
    .collect();
    let mut nodes = Vec::new();
    for answer in futures::future::join_all(asks).await {
        let Ok(ControlReply::Rollout { node, figures }) = answer else {
            continue;
        };
        nodes.push(node);
        for f in figures.iter().filter(|f| f.rollout == rollout.id) {
            if let Some(sum) = sums.iter_mut().find(|s| s.arm == f.arm) {
                sum.add(f);
            }
        }
    }
    (sums, nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> ModelRoutes {
        ModelRoutes {
            model: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn aliases_remember_what_they_named() {
        let mut r = routes();
        set_alias(&mut r, "production", Some(1)).unwrap();
        set_alias(&mut r, "production", Some(1)).unwrap();
        assert!(r.previous.is_empty(), "the same version is no change");
        set_alias(&mut r, "production", Some(3)).unwrap();
        assert_eq!(r.previous["production"], 1);
        rollback(&mut r, "production").unwrap();
        assert_eq!((r.aliases["production"], r.previous["production"]), (1, 3));
        set_alias(&mut r, "production", None).unwrap();
        assert!(r.aliases.is_empty() && r.previous.is_empty());
        assert!(set_alias(&mut r, "production", None).is_err());
        assert!(rollback(&mut r, "production").is_err());
    }

    #[test]
    fn a_rollout_starts_once_and_ends_promoted_or_rolled_back() {
        let mut r = routes();
        assert!(
            start(&mut r, "production", 2, 10.0).is_err(),
            "no alias yet"
        );
        set_alias(&mut r, "production", Some(1)).unwrap();
        assert!(
            start(&mut r, "production", 1, 10.0).is_err(),
            "the same version"
        );
        start(&mut r, "production", 2, 10.0).unwrap();
        assert!(
            start(&mut r, "production", 3, 10.0).is_err(),
            "one at a time"
        );
        assert!(set_alias(&mut r, "production", Some(3)).is_err());
        assert_eq!(r.named_versions(), [1, 2].into());
        end(&mut r, "production", true).unwrap();
        assert_eq!((r.aliases["production"], r.previous["production"]), (2, 1));
        assert!(r.rollout.is_none());
        assert_eq!(
            r.last_rollout
                .as_ref()
                .and_then(|x| x.ended.clone())
                .map(|e| e.promoted),
            Some(true)
        );
        assert!(
            end(&mut r, "production", true).is_err(),
            "nothing to promote"
        );
        start(&mut r, "production", 3, 50.0).unwrap();
        rollback(&mut r, "production").unwrap();
        assert_eq!(
            r.aliases["production"], 2,
            "a rolled back canary changes nothing"
        );
        rollback(&mut r, "production").unwrap();
        assert_eq!(r.aliases["production"], 1, "then the alias goes back");
    }
}
