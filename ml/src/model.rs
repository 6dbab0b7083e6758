//! The networks: an MLP for tabular data and a small CNN for images, as one
//! burn module whose parameters are named `convs.{i}.weight|bias` and
//! `dense.{i}.weight|bias` (Linear weights `[in, out]`, conv weights
//! `[out, in, k, k]`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use oblivion_protocol::ModelSpec;

use crate::MlError;

/// A model spec bound to the data it will see: everything needed to build
/// the network and to check weights against it.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// The spec's model.
    pub model: ModelSpec,
    /// Shape of one sample (`[1, 28, 28]`, or `[features]`).
    pub input_shape: Vec<usize>,
    /// Number of output classes.
    pub classes: usize,
}

impl Architecture {
    /// Binds `model` to inputs of `input_shape` and `classes` outputs.
    pub fn new(
        model: ModelSpec,
        input_shape: Vec<usize>,
        classes: usize,
    ) -> Result<Architecture, MlError> {
        if classes < 2 {
            return Err(MlError::Data(format!(
                "data has {classes} class(es); at least 2 are needed"
            )));
        }
        if matches!(model, ModelSpec::Cnn { .. }) && input_shape.len() != 3 {
            return Err(MlError::Data("a cnn needs image data".into()));
        }
        Ok(Architecture {
            model,
            input_shape,
            classes,
        })
    }

    /// Values per input sample.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// The convolution kernel side, for a CNN.
    pub fn kernel_size(&self) -> Option<usize> {
        match &self.model {
            ModelSpec::Cnn { kernel_size, .. } => Some(*kernel_size as usize),
            ModelSpec::Mlp { .. } => None,
        }
    }

    fn hidden(&self) -> &[u32] {
        match &self.model {
            ModelSpec::Mlp { hidden } | ModelSpec::Cnn { hidden, .. } => hidden,
        }
    }

    /// Number of dense layers (hidden ones plus the output layer).
    pub fn dense_layers(&self) -> usize {
        self.hidden().len() + 1
    }

    /// Channel widths `(in, out)` of the two convolutions, and the number of
    /// features after the second pooling.
    fn conv_plan(&self) -> Option<([(usize, usize); 2], usize)> {
        let ModelSpec::Cnn { channels, .. } = &self.model else {
            return None;
        };
        let (c0, h, w) = (
            self.input_shape[0],
            self.input_shape[1],
            self.input_shape[2],
        );
        let (c1, c2) = (channels[0] as usize, channels[1] as usize);
        // "Same" padding keeps the size; each 2x2 pooling halves it (floor).
        Some(([(c0, c1), (c1, c2)], c2 * (h / 4) * (w / 4)))
    }

    /// Widths `(in, out)` of the dense layers.
    fn dense_plan(&self) -> Vec<(usize, usize)> {
        let first = self.conv_plan().map_or(self.input_len(), |(_, f)| f);
        let mut widths = vec![first];
        widths.extend(self.hidden().iter().map(|&h| h as usize));
        widths.push(self.classes);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Names and shapes of every parameter, sorted by name (the order of
    /// [`crate::params::Params`]).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        if let (Some((convs, _)), Some(k)) = (self.conv_plan(), self.kernel_size()) {
            for (i, (cin, cout)) in convs.iter().enumerate() {
                out.push((format!("convs.{i}.weight"), vec![*cout, *cin, k, k]));
                out.push((format!("convs.{i}.bias"), vec![*cout]));
            }
        }
        for (i, (din, dout)) in self.dense_plan().iter().enumerate() {
            out.push((format!("dense.{i}.weight"), vec![*din, *dout]));
            out.push((format!("dense.{i}.bias"), vec![*dout]));
        }
        out.sort();
        out
    }

    /// Number of trainable values.
    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Multiply-adds of one forward pass over one sample: what evaluating
    /// or training on a sample costs, up to a constant.
    pub fn forward_macs(&self) -> u64 {
        let mut macs: u64 = 0;
        if let (Some((convs, _)), Some(k)) = (self.conv_plan(), self.kernel_size()) {
            let (mut h, mut w) = (self.input_shape[1] as u64, self.input_shape[2] as u64);
            for (cin, cout) in convs {
                macs = macs.saturating_add(h * w * (cin * cout * k * k) as u64);
                (h, w) = (h / 2, w / 2);
            }
        }
        for (din, dout) in self.dense_plan() {
            macs = macs.saturating_add((din as u64).saturating_mul(dout as u64));
        }
        macs
    }

    /// An upper estimate of the largest single buffer a training step at
    /// `batch` allocates, in bytes: the biggest of the parameter tensors,
    /// the layer activations and a convolution's unfolded input (im2col).
    /// A GPU must bind buffers this large to train the model.
    pub fn largest_buffer_bytes(&self, batch: usize) -> u64 {
        let params = self
            .param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .max()
            .unwrap_or(0);
        let mut values = params.max(batch * self.input_len());
        if let (Some((convs, _)), Some(k)) = (self.conv_plan(), self.kernel_size()) {
            let (mut h, mut w) = (self.input_shape[1], self.input_shape[2]);
            for (cin, cout) in convs {
                values = values
                    .max(batch * h * w * cin * k * k)
                    .max(batch * h * w * cout);
                (h, w) = (h / 2, w / 2);
            }
        }
        for (din, dout) in self.dense_plan() {
            values = values.max(batch * din.max(dout));
        }
        values as u64 * 4
    }

    /// Builds the network on `device` (weights are random until assigned).
    pub fn build(&self, device: &Device) -> Network {
        let convs = match (self.conv_plan(), self.kernel_size()) {
            (Some((plan, _)), Some(k)) => plan
                .iter()
                .map(|(cin, cout)| {
                    Conv2dConfig::new([*cin, *cout], [k, k])
                        .with_padding(PaddingConfig2d::Same)
                        .init(device)
                })
                .collect(),
            _ => Vec::new(),
        };
        Network {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dense: self
                .dense_plan()
                .iter()
                .map(|(i, o)| LinearConfig::new(*i, *o).init(device))
                .collect(),
            activation: Relu::new(),
        }
    }
}

/// The network itself: optional conv-pool blocks, then dense layers.
#[derive(Module, Debug)]
pub struct Network {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    dense: Vec<Linear>,
    activation: Relu,
}

impl Network {
    /// Logits `[batch, classes]` for a batch of flattened samples
    /// `[batch, input_len]`; `image` gives `[channels, height, width]` when
    /// the network starts with convolutions.
    pub fn forward(&self, x: Tensor<2>, image: Option<[usize; 3]>) -> Tensor<2> {
        let mut x = x;
        if let (Some([c, h, w]), false) = (image, self.convs.is_empty()) {
            let batch = x.dims()[0];
            let mut y: Tensor<4> = x.reshape([batch, c, h, w]);
            for conv in &self.convs {
                y = self.pool.forward(self.activation.forward(conv.forward(y)));
            }
            let [b, c, h, w] = y.dims();
            x = y.reshape([b, c * h * w]);
        }
        let last = self.dense.len().saturating_sub(1);
        for (i, layer) in self.dense.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.forward(x);
            }
        }
        x
    }
}
