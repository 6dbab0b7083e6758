//! A job's spec, whichever its task: training a model ([`TrainingSpec`]) or
//! running one over rows ([`InferenceSpec`]). A spec says which by its
//! `task` field, which a training spec may leave out (it is the default,
//! and every spec written before inference existed is one).

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::aggregation::ReplicationSpec;
use crate::inference::InferenceSpec;
use crate::spec::{RewardSpec, TrainingSpec, Visibility};

/// A job's declarative spec.
// One spec a job, read once: the bytes a box would save do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum JobSpec {
    /// Train a model.
    Training(TrainingSpec),
    /// Run a trained model over rows.
    Inference(InferenceSpec),
}

impl JobSpec {
    /// Parses a spec from JSON and validates it.
    ///
    /// A JSON error names the field serde stopped at; a rule violation names
    /// the field and the rule.
    pub fn from_json(text: &str) -> Result<JobSpec, SpecError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value: serde_json::Value =
            serde_path_to_error::deserialize(&mut de).map_err(SpecError::from_json)?;
        de.end()
            .map_err(|e| SpecError::new("", format!("trailing characters after the spec: {e}")))?;
        let spec = JobSpec::from_value(value)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads a spec (not validated) by its `task`.
    fn from_value(mut value: serde_json::Value) -> Result<JobSpec, SpecError> {
        let task = match value.get("task") {
            None => "training".to_string(),
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(_) => return Err(SpecError::new("task", "must be a string")),
        };
        match task.as_str() {
            "training" => {
                if let Some(fields) = value.as_object_mut() {
                    fields.remove("task");
                }
                serde_path_to_error::deserialize(value)
                    .map(JobSpec::Training)
                    .map_err(SpecError::from_json)
            }
            "inference" => serde_path_to_error::deserialize(value)
                .map(JobSpec::Inference)
                .map_err(SpecError::from_json),
            other => Err(SpecError::new(
                "task",
                format!("unknown task {other:?}; a job is \"training\" or \"inference\""),
            )),
        }
    }

    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            JobSpec::Training(t) => t.validate(),
            JobSpec::Inference(i) => i.validate(),
        }
    }

    /// The training spec, for a training job.
    pub fn training(&self) -> Option<&TrainingSpec> {
        match self {
            JobSpec::Training(t) => Some(t),
            JobSpec::Inference(_) => None,
        }
    }

    /// The inference spec, for an inference job.
    pub fn inference(&self) -> Option<&InferenceSpec> {
        match self {
            JobSpec::Inference(i) => Some(i),
            JobSpec::Training(_) => None,
        }
    }

    /// Its short human name.
    pub fn name(&self) -> &str {
        match self {
            JobSpec::Training(t) => &t.name,
            JobSpec::Inference(i) => &i.name,
        }
    }

    /// Who may read it.
    pub fn visibility(&self) -> Visibility {
        match self {
            JobSpec::Training(t) => t.visibility,
            JobSpec::Inference(i) => i.visibility,
        }
    }

    /// What it pays, if anything.
    pub fn reward(&self) -> Option<&RewardSpec> {
        match self {
            JobSpec::Training(t) => t.reward.as_ref(),
            JobSpec::Inference(i) => i.reward.as_ref(),
        }
    }

    /// Its rounds: an inference job has one.
    pub fn rounds(&self) -> u32 {
        match self {
            JobSpec::Training(t) => t.rounds,
            JobSpec::Inference(_) => 1,
        }
    }

    /// Its slots' verification by replicas (see
    /// [`TrainingSpec::replication`]); an inference job's replicas are
    /// compared within its verification tolerance.
    pub fn replication(&self) -> ReplicationSpec {
        match self {
            JobSpec::Training(t) => t.replication(),
            JobSpec::Inference(i) => ReplicationSpec {
                fraction: i.replicas,
                tolerance: i.verification.tolerance,
            },
        }
    }

    /// The accounts whose workers may work on this job, when it is
    /// restricted: a private job's owner and its named trainers
    /// (lower-case `0x` hex). `None`: any worker may.
    pub fn restricted_to(&self, owner: Option<&str>) -> Option<Vec<String>> {
        let trainers = match self {
            JobSpec::Training(t) => &t.trainers,
            JobSpec::Inference(i) => &i.trainers,
        };
        if self.visibility() == Visibility::Public {
            return None;
        }
        let mut accounts: Vec<String> = owner
            .into_iter()
            .chain(trainers.iter().map(String::as_str))
            .filter_map(crate::auth::normalize_address)
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        Some(accounts)
    }
}

impl From<TrainingSpec> for JobSpec {
    fn from(spec: TrainingSpec) -> JobSpec {
        JobSpec::Training(spec)
    }
}

/// As its task's spec: a training spec without a `task` field (as every
/// stored spec before inference), an inference spec with one.
impl Serialize for JobSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JobSpec::Training(t) => t.serialize(s),
            JobSpec::Inference(i) => i.serialize(s),
        }
    }
}

/// By its `task` field, not validated (see [`JobSpec::from_json`]).
impl<'de> Deserialize<'de> for JobSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JobSpec, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        JobSpec::from_value(value).map_err(serde::de::Error::custom)
    }
}
