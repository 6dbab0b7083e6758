//! The model registry as visitors see it: the models they may read, found
//! by name and sorted; one model's card and lineage; its weights in every
//! format; and weights an owner registers, checked against the
//! architecture they declare. Over the market: a model on sale is seen by
//! everyone, and read by those who bought it.

use std::sync::Arc;

use oblivion_ml::export;
use oblivion_ml::model::Architecture;
use oblivion_protocol::api::{ModelSettlement, ModelView, RoundMetrics};
use oblivion_protocol::wire::FeatureScaling;
use oblivion_protocol::{DatasetSpec, ModelId, Visibility};

use super::accounts::Viewer;
use super::market::Market;
use super::shared::{Parts, check_released, job_row, ml_internal, weights};
use crate::blocking::blocking;
use crate::config::Config;
use crate::error::{AppError, Failure};
use oblivion_store::{Artifacts, Db, ModelEntry, ModelRow, now};

/// Model download formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// safetensors.
    Safetensors,
    /// ONNX.
    Onnx,
    /// burn's record (burnpack).
    Burn,
}

impl ModelFormat {
    /// Parses `onnx`, `safetensors` or `burn`.
    pub fn parse(s: &str) -> Option<ModelFormat> {
        match s {
            "safetensors" => Some(ModelFormat::Safetensors),
            "onnx" => Some(ModelFormat::Onnx),
            "burn" => Some(ModelFormat::Burn),
            _ => None,
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Burn => "bpk",
        }
    }
}

/// How a model list is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOrder {
    /// Newest first.
    Newest,
    /// Most accurate first (unknown accuracy last).
    Accuracy,
    /// By name.
    Name,
}

impl ModelOrder {
    /// Parses `newest`, `accuracy` or `name`.
    pub fn parse(s: &str) -> Option<ModelOrder> {
        match s {
            "newest" => Some(ModelOrder::Newest),
            "accuracy" => Some(ModelOrder::Accuracy),
            "name" => Some(ModelOrder::Name),
            _ => None,
        }
    }
}

/// The registry service.
pub struct Models {
    config: Arc<Config>,
    db: Db,
    artifacts: Artifacts,
    market: Arc<Market>,
}

impl Models {
    /// The registry over the store.
    pub(super) fn new(parts: &Parts, market: Arc<Market>) -> Models {
        Models {
            config: parts.config.clone(),
            db: parts.db.clone(),
            artifacts: parts.artifacts.clone(),
            market,
        }
    }

    /// The models `viewer` may read or buy whose name holds `search` (any
    /// case), in `order`.
    pub async fn list(
        &self,
        viewer: &Viewer,
        search: Option<&str>,
        order: ModelOrder,
    ) -> Result<Vec<ModelView>, AppError> {
        let needle = search.map(str::to_lowercase);
        let on_sale = self.market.on_sale().await?;
        let mut views = Vec::new();
        for m in self.db.models().await.map_err(AppError::db)? {
            if !needle
                .as_deref()
                .is_none_or(|n| m.entry.name.to_lowercase().contains(n))
            {
                continue;
            }
            let readable = may_read(&self.db, viewer, &m).await?;
            if !readable && !on_sale.contains_key(&m.id) {
                continue;
            }
            let listing = match on_sale.contains_key(&m.id) {
                true => self.market.listing_of(&m).await?,
                false => None,
            };
            let mut view = view_of(m);
            view.readable = readable;
            view.listing = listing;
            views.push(view);
        }
        match order {
            ModelOrder::Newest => {}
            ModelOrder::Accuracy => views.sort_by(|a, b| {
                b.accuracy
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.accuracy.unwrap_or(f64::NEG_INFINITY))
            }),
            ModelOrder::Name => views.sort_by(|a, b| a.name.cmp(&b.name)),
        }
        Ok(views)
    }

    async fn row(&self, id: ModelId) -> Result<ModelRow, AppError> {
        self.db
            .model(id)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::not_found(format!("no model {id}")))
    }

    /// A model whose weights `viewer` may read (404 if there is none, 403
    /// for someone else's private one it has not bought, and for a paid
    /// job's model before its settlement).
    pub async fn readable(&self, viewer: &Viewer, id: ModelId) -> Result<ModelRow, AppError> {
        let row = self.row(id).await?;
        if !may_read(&self.db, viewer, &row).await? {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("model {id} is private to its owner and those who bought it"),
            ));
        }
        self.released(row).await
    }

    /// The model `id` as its owner, to sell it (403 for anyone else's, and
    /// for a paid job's model before its settlement).
    pub async fn owned(&self, owner: &str, id: ModelId) -> Result<ModelRow, AppError> {
        let row = self.row(id).await?;
        if row.entry.owner.as_deref() != Some(owner) {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("model {id} is not yours to sell"),
            ));
        }
        self.released(row).await
    }

    /// `row`, unless it is a paid job's model whose settlement is not seen
    /// yet (403).
    async fn released(&self, row: ModelRow) -> Result<ModelRow, AppError> {
        if let Some(job) = row.job_id {
            check_released(&self.db, &job_row(&self.db, job).await?).await?;
        }
        Ok(row)
    }

    /// One model's card and lineage (its job's rounds and contributors),
    /// and its listing: for those who may read it, and for everyone while
    /// it is on sale.
    pub async fn show(&self, viewer: &Viewer, id: ModelId) -> Result<ModelView, AppError> {
        let row = self.row(id).await?;
        let readable = may_read(&self.db, viewer, &row).await?;
        let listing = self.market.listing_of(&row).await?;
        let on_sale = listing
            .as_ref()
            .is_some_and(|l| l.state == oblivion_protocol::market::ListingState::Listed);
        if !readable && !on_sale {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("model {id} is private to its owner and those who bought it"),
            ));
        }
        let job = row.job_id;
        let mut view = view_of(row);
        view.readable = readable;
        // Only its owner sees a listing before the chain has it.
        view.listing = listing.filter(|l| on_sale || viewer.0.as_deref() == Some(&l.owner));
        if let Some(job) = job {
            view.history = self.db.rounds(job).await.map_err(AppError::db)?;
            view.contributors = self.db.contributors(job).await.map_err(AppError::db)?;
            if readable {
                view.settlement =
                    self.db
                        .payment(job)
                        .await
                        .map_err(AppError::db)?
                        .map(|p| ModelSettlement {
                            job_key: p.job_key,
                            model_hash: p.settlement.map(|s| s.model_hash),
                        });
            }
        }
        Ok(view)
    }

    /// A model's weights in `format`, with a file name.
    pub async fn weights(
        &self,
        viewer: &Viewer,
        id: ModelId,
        format: ModelFormat,
    ) -> Result<(Vec<u8>, String), AppError> {
        let row = self.readable(viewer, id).await?;
        let (arch, scaling) = architecture(&row)?;
        let params = weights(&self.artifacts, row.entry.weights_sha).await?;
        let bytes = blocking(move || export_as(&arch, &params, scaling.as_ref(), format)).await?;
        Ok((bytes, format!("model-{id}.{}", format.extension())))
    }

    /// Registers weights `owner` uploaded in the safetensors form a model
    /// download has (its metadata declares the architecture, which the
    /// weights must match exactly); the new model's id.
    pub async fn register(
        &self,
        owner: &str,
        name: &str,
        visibility: Visibility,
        file: Vec<u8>,
    ) -> Result<ModelId, AppError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(
                AppError::unprocessable("name: must be 1 to 100 characters").with_field("name")
            );
        }
        let max_params = self.config.budgets.max_params;
        let (arch, params, scaling) = blocking(move || {
            export::from_safetensors(&file)
                .map_err(|e| AppError::unprocessable(format!("weights: {e}")).with_field("weights"))
        })
        .await?;
        if arch.num_params() as u64 > max_params {
            return Err(AppError::unprocessable(format!(
                "weights: {} parameters exceed the budget of {max_params} (max_params)",
                arch.num_params()
            ))
            .with_field("weights"));
        }
        let encoded = blocking(move || Ok(params.to_safetensors(None))).await?;
        let weights_sha = oblivion_protocol::BlobId::of(&encoded);
        // A copy registered again would be a second entry without the
        // original's lineage, owner or contributors (and could be sold
        // around them).
        if let Some(other) = self
            .db
            .model_with_weights(weights_sha)
            .await
            .map_err(AppError::db)?
        {
            return Err(AppError::conflict(format!(
                "weights: these are model {other}'s weights; fine-tune it (init) to make a new model"
            ))
            .with_field("weights"));
        }
        let weights_sha = self.artifacts.put(encoded).await.map_err(AppError::io)?;
        let normalization = scaling
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| AppError::internal(format!("normalisation: {e}")))?;
        let entry = ModelEntry {
            name: name.to_string(),
            owner: Some(owner.to_string()),
            visibility,
            model: arch.model,
            input_shape: arch.input_shape,
            classes: arch.classes,
            normalization,
            weights_sha,
            dataset: REGISTERED.to_string(),
            accuracy: None,
            loss: None,
            epsilon: None,
            rounds: 0,
            created_at: now() as i64,
        };
        let id = self.db.register_model(&entry).await.map_err(AppError::db)?;
        tracing::info!(model = %id, "weights registered");
        Ok(id)
    }
}

/// What a registered model's entry says it was trained on.
pub const REGISTERED: &str = "registered";

/// Whether `viewer` may read `model`'s weights (download, run, fine-tune):
/// a public one, its own, or one it bought.
pub(super) async fn may_read(db: &Db, viewer: &Viewer, model: &ModelRow) -> Result<bool, AppError> {
    if model.entry.visibility == Visibility::Public
        || (viewer.0.is_some() && viewer.0 == model.entry.owner)
    {
        return Ok(true);
    }
    match viewer.0.as_deref() {
        Some(account) => db.has_bought(model.id, account).await.map_err(AppError::db),
        None => Ok(false),
    }
}

/// A model's architecture and feature scaling, as stored.
pub(super) fn architecture(
    row: &ModelRow,
) -> Result<(Architecture, Option<FeatureScaling>), AppError> {
    let e = &row.entry;
    let arch = Architecture::new(e.model.clone(), e.input_shape.clone(), e.classes)
        .map_err(|err| AppError::internal(err.to_string()))?;
    let scaling = e
        .normalization
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| AppError::internal(format!("stored normalisation: {err}")))?;
    Ok((arch, scaling))
}

/// The weights `params` of `arch` as a file of `format`.
pub(super) fn export_as(
    arch: &Architecture,
    params: &oblivion_ml::params::Params,
    scaling: Option<&FeatureScaling>,
    format: ModelFormat,
) -> Result<Vec<u8>, AppError> {
    oblivion_ml::weights::check_params(arch, params).map_err(ml_internal)?;
    match format {
        ModelFormat::Safetensors => Ok(export::to_safetensors(arch, params, scaling)),
        ModelFormat::Onnx => export::to_onnx(arch, params, scaling).map_err(ml_internal),
        ModelFormat::Burn => export::to_burn_record(arch, params).map_err(ml_internal),
    }
}

/// The API's view of an entry (without its lineage).
pub(super) fn view_of(row: ModelRow) -> ModelView {
    let e = row.entry;
    let columns = e
        .normalization
        .as_deref()
        .and_then(|n| serde_json::from_str::<FeatureScaling>(n).ok())
        .and_then(|s| s.columns);
    ModelView {
        id: row.id,
        job: row.job_id,
        name: e.name,
        owner: e
            .owner
            .as_deref()
            .and_then(oblivion_protocol::auth::normalize_address),
        visibility: e.visibility,
        architecture: e.model,
        input_shape: e.input_shape,
        classes: e.classes,
        weights_sha256: e.weights_sha,
        dataset: dataset_label(&e.dataset),
        accuracy: e.accuracy,
        loss: e.loss,
        epsilon: e.epsilon,
        rounds: e.rounds,
        created_at: e.created_at,
        columns,
        history: Vec::<RoundMetrics>::new(),
        contributors: Vec::new(),
        readable: true,
        listing: None,
        settlement: None,
    }
}

/// A short name for what a model was trained on (its job's dataset, as
/// stored: a spec's JSON).
pub fn dataset_label(stored: &str) -> String {
    match serde_json::from_str::<DatasetSpec>(stored) {
        Ok(DatasetSpec::Builtin(name)) => name,
        Ok(DatasetSpec::Csv(_)) => "csv".into(),
        Ok(DatasetSpec::Idx { .. }) => "idx".into(),
        Ok(DatasetSpec::Federated { validation }) => {
            let inner = serde_json::to_string(&validation).unwrap_or_default();
            format!("federated {}", dataset_label(&inner))
        }
        Err(_) => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_is_labelled_by_what_a_visitor_knows_it_by() {
        assert_eq!(dataset_label(r#"{"builtin":"mnist"}"#), "mnist");
        assert_eq!(
            dataset_label(r#"{"federated":{"validation":{"builtin":"iris"}}}"#),
            "federated iris"
        );
        assert_eq!(dataset_label(REGISTERED), "registered");
    }
}
