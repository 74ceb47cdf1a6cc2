//! Tests of the assembled model: names, shapes, seeding, modes and the saved file.

use super::*;
use crate::config::TrainConfig;
use crate::export::testing::max_abs_diff;
use medgan_sample::DataType;

fn small_arch(data_type: DataType) -> Architecture {
    let mut config = TrainConfig::default();
    config.autoencoder.embedding_dims = vec![16, 8];
    config.generator.noise_dim = 8;
    config.generator.dims = vec![8, 8, 8];
    config.discriminator.dims = vec![12, 6];
    config.architecture(20, data_type)
}

fn noise(rows: usize, cols: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    layers::normal_tensor(&mut rng, rows, cols, &Device::Cpu).unwrap()
}

#[test]
fn names_and_shapes_follow_the_architecture_document() {
    let arch = TrainConfig::default().architecture(915, DataType::Binary);
    let model = MedganModel::new(&arch, &Device::Cpu, 1).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = model
        .named_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.dims().to_vec()))
        .collect();
    let expect = |name: &str, shape: &[usize]| {
        assert_eq!(shapes.get(name).map(Vec::as_slice), Some(shape), "{name}");
    };
    expect("encoder.layers.0.weight", &[128, 915]);
    expect("encoder.layers.0.bias", &[128]);
    expect("decoder.layers.0.weight", &[915, 128]);
    expect("decoder.layers.0.bias", &[915]);
    for i in 0..3 {
        expect(&format!("generator.blocks.{i}.linear.weight"), &[128, 128]);
        for part in ["weight", "bias", "running_mean", "running_var"] {
            expect(&format!("generator.blocks.{i}.bn.{part}"), &[128]);
        }
    }
    expect("discriminator.layers.0.weight", &[256, 1830]);
    expect("discriminator.layers.1.weight", &[128, 256]);
    expect("discriminator.layers.2.weight", &[1, 128]);
    expect("discriminator.layers.2.bias", &[1]);
    assert_eq!(shapes.len(), 4 + 3 * 5 + 6);
    assert!(!shapes.contains_key("generator.blocks.0.linear.bias"));
}

#[test]
fn optimiser_groups_never_hold_running_statistics() {
    let model = MedganModel::new(&small_arch(DataType::Binary), &Device::Cpu, 1).unwrap();
    let generator: Vec<String> = model
        .generator_parameters()
        .into_iter()
        .map(|v| v.0)
        .collect();
    assert!(generator.iter().all(|n| !n.contains("running")));
    assert!(generator.contains(&"decoder.layers.1.bias".to_string()));
    assert!(generator.contains(&"generator.blocks.2.bn.weight".to_string()));
    let autoencoder: Vec<String> = model
        .autoencoder_parameters()
        .into_iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(autoencoder.len(), 8);
    assert_eq!(model.discriminator_parameters().len(), 6);
}

#[test]
fn mirrored_decoder_and_output_shapes() {
    let model = MedganModel::new(&small_arch(DataType::Binary), &Device::Cpu, 2).unwrap();
    let tensors = model.named_tensors();
    assert_eq!(tensors["decoder.layers.0.weight"].dims(), &[16, 8]);
    assert_eq!(tensors["decoder.layers.1.weight"].dims(), &[20, 16]);
    let records = model.sample(&noise(5, 8, 3)).unwrap();
    assert_eq!(records.dims(), &[5, 20]);
    let values = records.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert_eq!(model.encode(&records).unwrap().dims(), &[5, 8]);
    assert_eq!(model.discriminate(&records).unwrap().dims(), &[5]);

    let counts = MedganModel::new(&small_arch(DataType::Count), &Device::Cpu, 2).unwrap();
    let values = counts.sample(&noise(5, 8, 3)).unwrap();
    let values = values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|&c| c >= 0.0));
}

#[test]
fn same_seed_same_bits_other_seed_other_weights() {
    let arch = small_arch(DataType::Binary);
    let flat = |seed| -> Vec<Vec<f32>> {
        let model = MedganModel::new(&arch, &Device::Cpu, seed).unwrap();
        model
            .named_tensors()
            .values()
            .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    assert_eq!(flat(9), flat(9));
    assert_ne!(flat(9), flat(10));
}

#[test]
fn training_mode_moves_running_stats_inference_mode_does_not() {
    let model = MedganModel::new(&small_arch(DataType::Binary), &Device::Cpu, 4).unwrap();
    let input = noise(32, 8, 5);
    let mean_of = |m: &MedganModel| {
        m.named_tensors()["generator.blocks.0.bn.running_mean"]
            .to_vec1::<f32>()
            .unwrap()
    };
    let before = mean_of(&model);
    let eval_a = model.generate_embedding(&input, false).unwrap();
    assert_eq!(mean_of(&model), before);
    let train = model.generate_embedding(&input, true).unwrap();
    let after = mean_of(&model);
    assert_ne!(after, before);
    let eval_b = model.generate_embedding(&input, false).unwrap();
    assert!(max_abs_diff(&eval_a, &train) > 1e-3);
    assert!(max_abs_diff(&eval_a, &eval_b) > 0.0);
    model.refresh_batch_norm(3, 16, 7).unwrap();
    assert_ne!(mean_of(&model), after);
    assert!(model.generate_embedding(&noise(1, 8, 1), true).is_err());
}

#[test]
fn save_and_load_round_trip_and_refuse_other_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let arch = small_arch(DataType::Binary);
    let model = MedganModel::new(&arch, &Device::Cpu, 6).unwrap();
    model.generate_embedding(&noise(10, 8, 1), true).unwrap();
    model.save(&path).unwrap();
    let loaded = MedganModel::load(&path, &arch, &Device::Cpu).unwrap();
    let same = |a: &MedganModel, b: &MedganModel| {
        let (a, b) = (a.named_tensors(), b.named_tensors());
        a.keys().eq(b.keys())
            && a.iter().all(|(name, t)| {
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    == b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
            })
    };
    assert!(same(&model, &loaded));
    let input = noise(4, 8, 2);
    let a = model.sample(&input).unwrap().to_vec2::<f32>().unwrap();
    let b = loaded.sample(&input).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);

    let mut other = arch.clone();
    other.n_features = 21;
    let err = MedganModel::load(&path, &other, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
