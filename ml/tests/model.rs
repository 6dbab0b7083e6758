//! The ML core on real data: names line up, records round-trip, and
//! federated averaging of locally trained models learns.

use oblivion_ml::ComputeDevice;
use oblivion_ml::data::{Dataset, parse_csv};
use oblivion_ml::export::{from_burn_record, to_burn_record};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::{LocalTraining, evaluate, train};
use oblivion_ml::weights::{initial_params, read_params};
use oblivion_protocol::{LocalWork, ModelSpec, OptimizerSpec};

fn cnn() -> Architecture {
    let spec = ModelSpec::Cnn {
        channels: [4, 8],
        kernel_size: 5,
        hidden: vec![16],
    };
    Architecture::new(spec, vec![1, 28, 28], 10).unwrap()
}

#[test]
fn network_parameters_match_the_architecture() {
    let mlp = Architecture::new(ModelSpec::Mlp { hidden: vec![8, 6] }, vec![4], 3).unwrap();
    for arch in [cnn(), mlp] {
        let device = ComputeDevice::Cpu.device().unwrap();
        let read = read_params(&arch.build(&device)).unwrap();
        let names: Vec<(String, Vec<usize>)> = read
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        assert_eq!(names, arch.param_shapes());
        assert_eq!(read.len(), arch.num_params());
    }
}

#[test]
fn initial_weights_are_seeded_and_records_round_trip() {
    let arch = cnn();
    let a = initial_params(&arch, 9).unwrap();
    assert!(
        a == initial_params(&arch, 9).unwrap(),
        "same seed, same weights"
    );
    assert!(
        a != initial_params(&arch, 10).unwrap(),
        "another seed, other weights"
    );
    let record = to_burn_record(&arch, &a).unwrap();
    assert!(
        from_burn_record(&arch, &record).unwrap() == a,
        "burn record round-trips"
    );
    assert!(from_burn_record(&arch, b"not a record").is_err());
}

#[test]
fn federated_average_of_local_training_learns_iris() {
    let csv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/tabular/iris.csv"
    ))
    .unwrap();
    let all = parse_csv(&csv).unwrap();
    let (mut train_set, mut val) = all.split(0.2, 1);
    let norm = train_set.normalization();
    train_set.normalize(&norm);
    val.normalize(&norm);
    let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![16] }, vec![4], 3).unwrap();
    let mut global = initial_params(&arch, 1).unwrap();
    let before = evaluate(&arch, &global, &val, ComputeDevice::Cpu).unwrap();
    let shards: Vec<Dataset> = train_set.chunks(3);
    for round in 0..5 {
        let mut deltas = Vec::new();
        for (i, shard) in shards.iter().enumerate() {
            let config = LocalTraining {
                optimizer: OptimizerSpec::Sgd {
                    learning_rate: 0.05,
                    momentum: 0.9,
                },
                batch_size: 8,
                work: LocalWork::Epochs(3),
                seed: round * 10 + i as u64,
            };
            let out = train(
                &arch,
                &global,
                shard,
                &config,
                ComputeDevice::Cpu,
                &mut |_| true,
            )
            .unwrap();
            deltas.push((out.params.minus(&global), shard.len() as f64));
        }
        global = global.plus(&Params::weighted_mean(&deltas).unwrap());
    }
    let after = evaluate(&arch, &global, &val, ComputeDevice::Cpu).unwrap();
    assert!(after.loss < before.loss);
    assert!(after.accuracy >= 0.9, "iris accuracy {}", after.accuracy);
}
