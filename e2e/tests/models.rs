//! The model registry: a completed training job's model is an entry with
//! its card and lineage; an owner registers weights, checked against the
//! architecture they declare; a registered model runs as an inference job
//! and starts a training job (fine-tuning); a private one stays its
//! owner's.

use std::time::Duration;

use oblivion_e2e::{Network, OTHER_KEY};
use oblivion_ml::params::Params;
use oblivion_protocol::ModelId;
use oblivion_protocol::api::ModelView;

const TIMEOUT: Duration = Duration::from_secs(300);

async fn models(api: &oblivion_e2e::Api, query: &str) -> Vec<ModelView> {
    let (status, body) = api.get(&format!("/api/models{query}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

async fn register(api: &oblivion_e2e::Api, query: &str, file: Vec<u8>) -> (u16, serde_json::Value) {
    api.post(&format!("/api/models{query}"), file)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_registered_found_run_and_fine_tuned() {
    let mut net = Network::start(&[]).unwrap();
    net.add_worker("w0").unwrap();
    net.add_worker("w1").unwrap();
    let api = net.api();
    let (job, trained) = api.train_example("iris-mlp.json", TIMEOUT).await.unwrap();

    // The completed job's model is in the registry, with its card.
    let listed = models(&api, "").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    let last = trained.history.last().unwrap();
    assert_eq!(entry.job, Some(job));
    assert_eq!(
        (entry.name.as_str(), entry.dataset.as_str()),
        ("iris-mlp", "iris")
    );
    assert_eq!(
        (entry.accuracy, entry.rounds),
        (Some(last.accuracy), last.round)
    );
    let card: ModelView = serde_json::from_value(
        api.get(&format!("/api/models/{}", entry.id))
            .await
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(card.history.len(), trained.history.len(), "its curves");
    assert!(!card.contributors.is_empty(), "its contributors");
    // Its weights are the job's model, in every format.
    let safetensors = api
        .get_bytes(&format!(
            "/api/models/{}/weights?format=safetensors",
            entry.id
        ))
        .await
        .unwrap();
    let from_job = api
        .get_bytes(&format!("/api/jobs/{job}/model?format=safetensors"))
        .await
        .unwrap();
    // (Byte for byte only up to the metadata's order, which is a map's.)
    let read = |bytes: &[u8]| oblivion_ml::export::from_safetensors(bytes).unwrap();
    assert_eq!(read(&safetensors), read(&from_job));
    for format in ["onnx", "burn"] {
        api.get_bytes(&format!("/api/models/{}/weights?format={format}", entry.id))
            .await
            .unwrap();
    }

    // The downloaded file is that model's weights: registered again, it is
    // refused (a second entry would drop the first's lineage and owner).
    let (status, body) = register(&api, "?name=iris%20copy", safetensors.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("model {}", entry.id)),
        "{body}"
    );
    // Weights of its own (here: nudged) register as a model of its own.
    let (mut nudged, metadata) = Params::from_safetensors(&safetensors).unwrap();
    nudged.tensors[0].values[0] += 1e-3;
    let nudged = nudged.to_safetensors(Some(metadata));
    let (status, body) = register(&api, "?name=iris%20copy", nudged.clone()).await;
    assert_eq!(status, 201, "{body}");
    let copy = ModelId(body["id"].as_u64().unwrap());
    let found = models(&api, "?q=COPY&sort=accuracy").await;
    assert_eq!(found.iter().map(|m| m.id).collect::<Vec<_>>(), vec![copy]);
    assert_eq!(found[0].dataset, "registered");
    assert_ne!(found[0].weights_sha256, entry.weights_sha256);

    // Weights that do not match what their metadata declares are refused.
    let (params, mut metadata) = Params::from_safetensors(&safetensors).unwrap();
    metadata.insert(
        "oblivion.model".into(),
        r#"{"kind":"mlp","hidden":[8]}"#.into(),
    );
    let mislabelled = params.to_safetensors(Some(metadata));
    let (status, body) = register(&api, "?name=liar", mislabelled).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("weights")),
        "{body}"
    );
    let (status, _) = net
        .anonymous()
        .post("/api/models?name=x", safetensors.clone())
        .await
        .unwrap();
    assert_eq!(status, 401, "registering needs an account");

    // The registered model runs over the rows the job held out, and
    // scores as the job's model did.
    let run = api
        .submit(&serde_json::json!({
            "task": "inference", "name": "iris copy rows",
            "model": {"model": copy}, "inputs": {"held_out_by": job}, "shards": 2
        }))
        .await
        .unwrap();
    let done = api.wait_finished(run, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(done.status.as_str(), "completed", "{done:?}");
    assert_eq!(done.outputs.unwrap().accuracy, Some(last.accuracy));

    // A training job starts from it: a private one, which no anonymous
    // worker takes, so its current weights are still the ones it started
    // from.
    let mut spec = oblivion_e2e::example("iris-mlp.json").unwrap();
    spec["init"] = serde_json::json!({"model": copy});
    spec["visibility"] = "private".into();
    let tune = api.submit(&spec).await.unwrap();
    let start = api
        .get_bytes(&format!("/api/jobs/{tune}/model?format=safetensors"))
        .await
        .unwrap();
    assert_eq!(
        read(&start),
        read(&nudged),
        "it starts from the registered weights"
    );
    api.post(&format!("/api/jobs/{tune}/cancel"), "")
        .await
        .unwrap();
    spec["model"] = serde_json::json!({"kind": "mlp", "hidden": [4]});
    let (status, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("init")),
        "{body}"
    );

    // A private model is its owner's alone.
    let (mut own, metadata) = Params::from_safetensors(&safetensors).unwrap();
    own.tensors[0].values[1] += 1e-3;
    let own = own.to_safetensors(Some(metadata));
    let (status, body) = register(&api, "?name=secret&visibility=private", own).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["id"].as_u64().unwrap();
    let other = net.api_as(OTHER_KEY);
    let theirs = models(&other, "").await;
    assert!(theirs.iter().all(|m| m.id.0 != secret), "{theirs:?}");
    assert_eq!(
        other.get(&format!("/api/models/{secret}")).await.unwrap().0,
        403
    );
    let (status, body) = other
        .post(
            "/api/jobs",
            serde_json::json!({
                "task": "inference", "name": "stolen",
                "model": {"model": secret}, "inputs": {"builtin": "iris"}, "shards": 1
            })
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("model.model")),
        "{body}"
    );
    assert!(models(&api, "").await.iter().any(|m| m.id.0 == secret));
}
