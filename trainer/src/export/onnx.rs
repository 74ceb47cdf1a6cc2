//! ONNX graph writer: the folded dense layers as Gemm, activation and Add nodes.
//!
//! Only standard operators that every runtime has are used, the batch dimension is symbolic, and
//! the initializers carry the stable weight names. Noise is an input: the graphs hold no RNG.

use candle_onnx::onnx::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_proto,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};
use medgan_sample::bundle::manifest::{
    BATCH_DIM, Dim, EMBEDDING_TENSOR, NOISE_INPUT, RECORDS_OUTPUT, TensorSpec,
};
use prost::Message;

use super::fold::{DenseLayer, FoldedNetworks};
use super::{
    DECODER_FILE, ExportError, GENERATOR_FILE, PRODUCER_NAME, PRODUCER_VERSION, SAMPLER_FILE,
};

/// Operator set of the default domain the graphs are written for (ONNX Runtime 1.14 and later).
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// The three graphs of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// Noise to records, generator and decoder fused.
    Sampler,
    /// Noise to embedding.
    Generator,
    /// Embedding to records.
    Decoder,
}

impl GraphKind {
    pub const ALL: [GraphKind; 3] = [GraphKind::Sampler, GraphKind::Generator, GraphKind::Decoder];

    /// File name inside the bundle.
    pub fn file_name(self) -> &'static str {
        match self {
            GraphKind::Sampler => SAMPLER_FILE,
            GraphKind::Generator => GENERATOR_FILE,
            GraphKind::Decoder => DECODER_FILE,
        }
    }

    /// Name of the graph's single input.
    pub fn input_name(self) -> &'static str {
        match self {
            GraphKind::Sampler | GraphKind::Generator => NOISE_INPUT,
            GraphKind::Decoder => EMBEDDING_TENSOR,
        }
    }

    /// Name of the graph's single output.
    pub fn output_name(self) -> &'static str {
        match self {
            GraphKind::Sampler | GraphKind::Decoder => RECORDS_OUTPUT,
            GraphKind::Generator => EMBEDDING_TENSOR,
        }
    }

    /// Runs of layers, each ending in a named tensor; the last name is the graph output.
    fn segments(self, nets: &FoldedNetworks) -> Vec<(&[DenseLayer], &'static str)> {
        let generator = (nets.generator.as_slice(), EMBEDDING_TENSOR);
        let decoder = (nets.decoder.as_slice(), RECORDS_OUTPUT);
        match self {
            GraphKind::Sampler => vec![generator, decoder],
            GraphKind::Generator => vec![generator],
            GraphKind::Decoder => vec![decoder],
        }
    }
}

/// Input and output widths of `kind` built from `nets`.
pub fn graph_widths(kind: GraphKind, nets: &FoldedNetworks) -> (usize, usize) {
    let segments = kind.segments(nets);
    let first = segments.first().and_then(|(layers, _)| layers.first());
    let last = segments.last().and_then(|(layers, _)| layers.last());
    (
        first.map_or(0, |l| l.dims().0),
        last.map_or(0, |l| l.dims().1),
    )
}

/// The manifest's description of a graph's input and output.
pub fn tensor_specs(kind: GraphKind, nets: &FoldedNetworks) -> (TensorSpec, TensorSpec) {
    let (in_dim, out_dim) = graph_widths(kind, nets);
    let spec = |name: &str, width| TensorSpec {
        name: name.to_string(),
        shape: vec![Dim::Symbolic(BATCH_DIM.to_string()), Dim::Fixed(width)],
    };
    (
        spec(kind.input_name(), in_dim),
        spec(kind.output_name(), out_dim),
    )
}

/// Builds the ONNX model of `kind`.
pub fn build_model(kind: GraphKind, nets: &FoldedNetworks) -> Result<ModelProto, ExportError> {
    let mut graph = GraphProto {
        name: format!("medgan_{}", kind.file_name().trim_end_matches(".onnx")),
        ..Default::default()
    };
    let mut current = kind.input_name().to_string();
    for (layers, segment_output) in kind.segments(nets) {
        for (i, layer) in layers.iter().enumerate() {
            let output = if i + 1 == layers.len() {
                segment_output.to_string()
            } else {
                format!("{}.output", layer.prefix)
            };
            push_layer(&mut graph, layer, &current, &output)?;
            current = output;
        }
    }
    let (in_dim, out_dim) = graph_widths(kind, nets);
    graph.input.push(value_info(kind.input_name(), in_dim));
    graph.output.push(value_info(kind.output_name(), out_dim));
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: PRODUCER_NAME.to_string(),
        producer_version: PRODUCER_VERSION.to_string(),
        doc_string: format!(
            "medGAN {}: `{}` [batch, {in_dim}] to `{}` [batch, {out_dim}]",
            graph.name,
            kind.input_name(),
            kind.output_name()
        ),
        graph: Some(graph),
        ..Default::default()
    })
}

/// Serialises a model to the bytes of an `.onnx` file.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Appends `output = act(input W^T + b) [+ input]` to the graph, with its two initializers.
fn push_layer(
    graph: &mut GraphProto,
    layer: &DenseLayer,
    input: &str,
    output: &str,
) -> Result<(), ExportError> {
    // Stored [in, out] so Gemm runs without transB: candle-onnx multiplies by a transposed view
    // otherwise, whose result for a row then depends on the batch size in the last bit, and the
    // self-check demands bit-identical rows. ONNX Runtime is row-invariant either way.
    let weight_name = layer.transposed_weight_name();
    let transposed = layer.weight.t().and_then(|t| t.contiguous());
    let transposed = transposed.map_err(ExportError::candle(format!(
        "cannot transpose {}",
        weight_name
    )))?;
    graph
        .initializer
        .push(initializer(&weight_name, &transposed)?);
    graph
        .initializer
        .push(initializer(&layer.bias_name(), &layer.bias)?);
    let linear = format!("{}.linear", layer.prefix);
    let activated = if layer.residual {
        format!("{}.activation", layer.prefix)
    } else {
        output.to_string()
    };
    graph.node.push(node(
        "Gemm",
        &linear,
        &[input, &weight_name, &layer.bias_name()],
    ));
    graph
        .node
        .push(node(layer.activation.onnx_op(), &activated, &[&linear]));
    if layer.residual {
        graph.node.push(node("Add", output, &[&activated, input]));
    }
    Ok(())
}

/// A node named after the tensor it produces.
fn node(op_type: &str, output: &str, inputs: &[&str]) -> NodeProto {
    NodeProto {
        name: format!("{output}/{op_type}"),
        op_type: op_type.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        ..Default::default()
    }
}

/// An f32 initializer holding `tensor`, little-endian raw data.
fn initializer(name: &str, tensor: &candle_core::Tensor) -> Result<TensorProto, ExportError> {
    let values = tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(ExportError::candle(format!("cannot read weight `{name}`")))?;
    Ok(TensorProto {
        name: name.to_string(),
        dims: tensor.dims().iter().map(|&d| d as i64).collect(),
        data_type: tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    })
}

/// A `[batch, width]` f32 graph input or output.
fn value_info(name: &str, width: usize) -> ValueInfoProto {
    let dims = [
        dimension::Value::DimParam(BATCH_DIM.to_string()),
        dimension::Value::DimValue(width as i64),
    ];
    let shape = TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|d| Dimension {
                value: Some(d),
                ..Default::default()
            })
            .collect(),
    };
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: tensor_proto::DataType::Float as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fold::fold_networks;
    use crate::export::testing::Fixture;
    use medgan_sample::DataType;

    #[test]
    fn graphs_use_only_standard_ops_and_stable_names() {
        let fixture = Fixture::new(DataType::Binary, 3);
        let nets = fold_networks(&fixture.arch, &fixture.weights).unwrap();
        let model = build_model(GraphKind::Sampler, &nets).unwrap();
        let decoded = ModelProto::decode(encode(&model).as_slice()).unwrap();
        assert_eq!(decoded, model);
        let graph = decoded.graph.unwrap();
        for node in &graph.node {
            assert!(
                ["Gemm", "Relu", "Tanh", "Sigmoid", "Add"].contains(&node.op_type.as_str()),
                "unexpected op {}",
                node.op_type
            );
        }
        let names: Vec<_> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"generator.blocks.1.folded.weight.transposed"));
        assert!(names.contains(&"decoder.layers.1.bias"));
        assert_eq!(names.len(), 2 * (nets.generator.len() + nets.decoder.len()));
        let input_dims = match &graph.input[0].r#type.as_ref().unwrap().value {
            Some(type_proto::Value::TensorType(t)) => t.shape.clone().unwrap().dim,
            other => panic!("input is not a tensor: {other:?}"),
        };
        assert_eq!(
            input_dims[0].value,
            Some(dimension::Value::DimParam("batch".into()))
        );
        assert_eq!(input_dims[1].value, Some(dimension::Value::DimValue(16)));
        assert_eq!(graph.output[0].name, RECORDS_OUTPUT);
        // The generator's output keeps its name inside the fused graph.
        assert!(graph.node.iter().any(|n| n.output == [EMBEDDING_TENSOR]));
    }

    #[test]
    fn specs_give_the_widths_of_each_graph() {
        let fixture = Fixture::new(DataType::Count, 4);
        let nets = fold_networks(&fixture.arch, &fixture.weights).unwrap();
        let widths: Vec<_> = GraphKind::ALL
            .iter()
            .map(|&k| graph_widths(k, &nets))
            .collect();
        assert_eq!(widths, [(16, 40), (16, 16), (16, 40)]);
        let (input, output) = tensor_specs(GraphKind::Decoder, &nets);
        assert_eq!(input.name, EMBEDDING_TENSOR);
        assert_eq!(
            output.shape,
            [Dim::Symbolic("batch".into()), Dim::Fixed(40)]
        );
    }
}
