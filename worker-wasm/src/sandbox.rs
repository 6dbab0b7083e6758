//! A model page's sandbox (`TabCommand::Predict`): the model runs in the
//! tab, on the CPU, over the rows the visitor gives it. The weights are
//! fetched once and kept for the page's next rows: no server round trip
//! after that.

use std::cell::RefCell;
use std::rc::Rc;

use oblivion_ml::ComputeDevice;
use oblivion_ml::data::{Dataset, FeatureScaling};
use oblivion_ml::export::from_safetensors;
use oblivion_ml::inference::infer;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::tab::{TabPredict, TabReport};

use crate::net::fetch_bytes;

/// A model as fetched: its URL, architecture, weights and scaling.
type Loaded = Rc<(String, Architecture, Params, Option<FeatureScaling>)>;

thread_local! {
    /// The last model fetched.
    static MODEL: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// Runs the request's rows through its model.
pub async fn predict(request: TabPredict) -> TabReport {
    match run(request).await {
        Ok((probabilities, classes)) => TabReport::Prediction {
            probabilities,
            classes,
            error: None,
        },
        Err(e) => TabReport::Prediction {
            probabilities: Vec::new(),
            classes: 0,
            error: Some(e),
        },
    }
}

async fn run(request: TabPredict) -> Result<(Vec<f32>, usize), String> {
    let cached = MODEL.with(|m| {
        m.borrow()
            .as_ref()
            .filter(|loaded| loaded.0 == request.weights_url)
            .cloned()
    });
    let model = match cached {
        Some(model) => model,
        None => {
            let bytes = fetch_bytes(&request.weights_url, "").await?;
            let (arch, params, scaling) = from_safetensors(&bytes).map_err(|e| e.to_string())?;
            let model = Rc::new((request.weights_url.clone(), arch, params, scaling));
            MODEL.with(|m| *m.borrow_mut() = Some(model.clone()));
            model
        }
    };
    let (_, arch, params, scaling) = &*model;
    let per = arch.input_len();
    if per == 0 || request.rows.is_empty() || !request.rows.len().is_multiple_of(per) {
        return Err(format!(
            "{} values are not whole rows of {per}",
            request.rows.len()
        ));
    }
    let n = request.rows.len() / per;
    let mut rows = Dataset {
        shape: arch.input_shape.clone(),
        features: request.rows,
        labels: vec![0; n],
        classes: arch.classes,
    };
    if let Some(scaling) = scaling {
        rows.normalize(scaling);
    }
    let outputs = infer(arch, params, &rows, ComputeDevice::Cpu).map_err(|e| e.to_string())?;
    Ok((outputs.probabilities, arch.classes))
}
