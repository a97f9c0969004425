package encoder

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"

	"egg/checkpoint"
	"egg/nn"
	"egg/tensor"
)

// MetadataKey is the safetensors metadata key under which Save stores the Config.
const MetadataKey = "egg.encoder"

// DefaultSession is the data key nnvision's readouts use when one session holds all
// neurons (readout.all_sessions.*).
const DefaultSession = "all_sessions"

// Config describes an encoding model completely, so that a model can be rebuilt from
// it (it travels as JSON in the metadata of egg's model files). A Config with
// Members describes an Ensemble of them; otherwise it needs exactly one core and one
// readout.
type Config struct {
	Name       string        `json:"name,omitempty"` // a label, e.g. "v4_data_driven"
	Core       CoreConfig    `json:"core"`           // the core
	Readout    ReadoutConfig `json:"readout"`        // the readout
	EluOffset  float32       `json:"elu_offset"`     // out = ELU(readout + EluOffset) + 1
	InputShape []int         `json:"input_shape"`    // [C, H, W] of the model's input images
	// InputMean and InputStd record the pixel normalisation the model was trained
	// with: its inputs are (pixel - InputMean) / InputStd. A zero InputStd means 1.
	InputMean float32  `json:"input_mean"`
	InputStd  float32  `json:"input_std"`
	NeuronIDs []int64  `json:"neuron_ids,omitempty"` // the data set's id of each output
	Members   []Config `json:"members,omitempty"`    // an ensemble's members
}

// CoreConfig selects the core: exactly one field is set.
type CoreConfig struct {
	SE2d   *SE2dConfig   `json:"se2d,omitempty"`   // the data-driven core
	ResNet *ResNetConfig `json:"resnet,omitempty"` // the task-driven core
}

// ReadoutConfig selects the readout: exactly one of Attention and Gaussian is set.
type ReadoutConfig struct {
	Neurons   int              `json:"neurons"`             // number of predicted neurons
	Session   string           `json:"session,omitempty"`   // the data key in tensor names; "" means DefaultSession
	Attention *AttentionConfig `json:"attention,omitempty"` // the attention readout
	Gaussian  *GaussianConfig  `json:"gaussian,omitempty"`  // the Gaussian readout
}

func (r ReadoutConfig) session() string {
	if r.Session == "" {
		return DefaultSession
	}
	return r.Session
}

// Standardize maps pixels x to model inputs, (x - InputMean) / InputStd (a zero
// InputStd counts as 1), recording gradients as usual.
func (c Config) Standardize(x *tensor.Tensor) *tensor.Tensor {
	std := c.InputStd
	if std == 0 {
		std = 1
	}
	if c.InputMean != 0 {
		x = tensor.AddScalar(x, -c.InputMean)
	}
	if std != 1 {
		x = tensor.Scale(x, 1/std)
	}
	return x
}

// Arch names the architecture: "<core>+<readout>" ("se2d+attention", "resnet+gaussian",
// ...), or "ensemble".
func (c Config) Arch() string {
	if len(c.Members) > 0 {
		return "ensemble"
	}
	core, ro := "?", "?"
	switch {
	case c.Core.SE2d != nil:
		core = "se2d"
	case c.Core.ResNet != nil:
		core = "resnet"
	}
	switch {
	case c.Readout.Attention != nil:
		ro = "attention"
	case c.Readout.Gaussian != nil:
		ro = "gaussian"
	}
	return core + "+" + ro
}

// Validate reports the first problem of c.
func (c Config) Validate() error {
	if len(c.Members) > 0 {
		for i, m := range c.Members {
			if err := m.Validate(); err != nil {
				return fmt.Errorf("ensemble member %d: %w", i, err)
			}
			if m.Readout.Neurons != c.Members[0].Readout.Neurons {
				return fmt.Errorf("encoder: ensemble member %d predicts %d neurons, member 0 predicts %d", i, m.Readout.Neurons, c.Members[0].Readout.Neurons)
			}
		}
		return nil
	}
	if (c.Core.SE2d == nil) == (c.Core.ResNet == nil) {
		return fmt.Errorf("encoder: config %q needs exactly one core (se2d or resnet)", c.Name)
	}
	if (c.Readout.Attention == nil) == (c.Readout.Gaussian == nil) {
		return fmt.Errorf("encoder: config %q needs exactly one readout (attention or gaussian)", c.Name)
	}
	if len(c.InputShape) != 3 || c.InputShape[0] < 1 || c.InputShape[1] < 1 || c.InputShape[2] < 1 {
		return fmt.Errorf("encoder: input_shape %v is not [C, H, W]", c.InputShape)
	}
	if c.Readout.Neurons < 1 {
		return fmt.Errorf("encoder: readout neurons %d must be positive", c.Readout.Neurons)
	}
	if len(c.NeuronIDs) > 0 && len(c.NeuronIDs) != c.Readout.Neurons {
		return fmt.Errorf("encoder: %d neuron ids for %d neurons", len(c.NeuronIDs), c.Readout.Neurons)
	}
	var errs []error
	if c.Core.SE2d != nil {
		errs = append(errs, c.Core.SE2d.Validate())
	}
	if c.Core.ResNet != nil {
		errs = append(errs, c.Core.ResNet.Validate())
	}
	if c.Readout.Attention != nil {
		errs = append(errs, c.Readout.Attention.Validate())
	}
	if c.Readout.Gaussian != nil {
		errs = append(errs, c.Readout.Gaussian.Validate())
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if c.Core.SE2d != nil && c.Core.SE2d.InputChannels != c.InputShape[0] {
		return fmt.Errorf("encoder: SE2d core takes %d input channels, input_shape is %v", c.Core.SE2d.InputChannels, c.InputShape)
	}
	if c.Core.ResNet != nil && c.Core.ResNet.InputChannels != c.InputShape[0] {
		return fmt.Errorf("encoder: ResNet core takes %d input channels, input_shape is %v", c.Core.ResNet.InputChannels, c.InputShape)
	}
	return nil
}

// New builds the model of cfg on dev: an *Encoder, or an *Ensemble when cfg has
// Members. Weights are drawn from rng with the reference's initialisation (nil:
// zeros, for loading a checkpoint). The model is in evaluation mode and its
// parameters do not require gradients.
func New(dev *tensor.Device, cfg Config, rng *rand.Rand) (Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Members) > 0 {
		ms := make([]Model, len(cfg.Members))
		for i, mc := range cfg.Members {
			m, err := New(dev, mc, rng)
			if err != nil {
				return nil, err
			}
			ms[i] = m
		}
		return NewEnsemble(ms...)
	}
	e := &Encoder{Offset: cfg.EluOffset, cfg: cfg}
	switch {
	case cfg.Core.SE2d != nil:
		core, err := NewSE2dCore(dev, *cfg.Core.SE2d, rng)
		if err != nil {
			return nil, err
		}
		e.Core = core
	default:
		core, err := NewResNetCore(dev, *cfg.Core.ResNet, rng)
		if err != nil {
			return nil, err
		}
		core.NNVisionNames = true
		e.Core = core
	}
	c, h, w := e.Core.OutShape(cfg.InputShape[1], cfg.InputShape[2])
	if h < 1 || w < 1 {
		return nil, fmt.Errorf("encoder: input_shape %v is too small for the core (feature map %dx%d)", cfg.InputShape, h, w)
	}
	ro := cfg.Readout
	switch {
	case ro.Attention != nil:
		r, err := NewAttentionReadout(dev, *ro.Attention, ro.session(), c, h, w, ro.Neurons, rng)
		if err != nil {
			return nil, err
		}
		e.Readout = r
	default:
		r, err := NewGaussianReadout(dev, *ro.Gaussian, ro.session(), c, ro.Neurons, rng)
		if err != nil {
			return nil, err
		}
		e.Readout = r
	}
	return e, nil
}

// defaultDevice is the device of Load and Import: the CPU with all cores.
var defaultDevice = sync.OnceValue(func() *tensor.Device { return tensor.CPU(0) })

// Save writes m to path as a safetensors file (atomically) whose metadata holds
// m's Config as JSON under MetadataKey, plus the entries of meta (which must not use
// MetadataKey).
func Save(path string, m Model, meta map[string]string) error {
	if _, ok := meta[MetadataKey]; ok {
		return fmt.Errorf("encoder: Save: metadata key %q is reserved for the model's config", MetadataKey)
	}
	b, err := json.Marshal(m.Config())
	if err != nil {
		return fmt.Errorf("encoder: Save: %w", err)
	}
	md := maps.Clone(meta)
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataKey] = string(b)
	return nn.Save(path, m, md)
}

// Load reads a model written by Save, on the CPU with all cores.
func Load(path string) (Model, error) { return LoadOn(defaultDevice(), path) }

// LoadOn reads a model written by Save onto dev.
func LoadOn(dev *tensor.Device, path string) (Model, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	js, ok := r.Metadata()[MetadataKey]
	if !ok {
		return nil, fmt.Errorf("encoder: %s has no %q metadata, so it is not an egg encoder file; use Import with the model's Config for nnvision checkpoints", path, MetadataKey)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		return nil, fmt.Errorf("encoder: %s: config metadata: %w", path, err)
	}
	m, err := New(dev, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("encoder: %s: %w", path, err)
	}
	if err := nn.Load(m, r, nn.LoadOptions{}); err != nil {
		return nil, fmt.Errorf("encoder: %s: %w", path, err)
	}
	return m, nil
}

// Import builds the model of arch on the CPU (all cores) and loads its state_dict
// from a checkpoint under the reference's own names (a safetensors file or a
// PyTorch .pt / .pth.tar written by nnvision / neuralpredictors, with core.* and
// readout.* tensors).
func Import(path string, arch Config) (Model, error) {
	return ImportOn(defaultDevice(), path, arch)
}

// ImportOn is Import onto dev.
func ImportOn(dev *tensor.Device, path string, arch Config) (Model, error) {
	m, err := New(dev, arch, nil)
	if err != nil {
		return nil, err
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := nn.Load(m, r, nn.LoadOptions{}); err != nil {
		return nil, fmt.Errorf("encoder: %s: %w", path, err)
	}
	return m, nil
}

// Part names a checkpoint that holds some of an Encoder's tensors, for models whose
// weights are spread over several files (a task-driven model's readout in its own
// file and its core in the ResNet's).
type Part struct {
	Path string // the checkpoint (safetensors or PyTorch .pt / .pth.tar)
	// Module is what the file holds: "" (the whole model), "core" or "readout".
	Module string
	// Prefix is prepended to the module's tensor names to find them in the file:
	// "readout." for a full model's file, "module.model." for a robustness-library
	// checkpoint, "" for a file of the module alone.
	Prefix string
	// Torchvision reads a ResNet core under torchvision's names (conv1.weight,
	// layer3.0.conv1.weight, OutBatchNorm.*) instead of nnvision's; tensors of the
	// file that the truncated network does not use (layer4, fc) are ignored.
	Torchvision bool
}

// LoadParts fills e's tensors from the parts in order (a later part overwrites an
// earlier one). Each part must hold every tensor of its module; apart from
// Torchvision parts, it may hold nothing else under its Prefix.
func LoadParts(e *Encoder, parts ...Part) error {
	for _, p := range parts {
		var mod nn.Module
		switch p.Module {
		case "":
			mod = e
		case "core":
			mod = e.Core
		case "readout":
			mod = e.Readout
		default:
			return fmt.Errorf("encoder: LoadParts: module %q is not \"\", \"core\" or \"readout\"", p.Module)
		}
		opts := nn.LoadOptions{Prefix: p.Prefix}
		if p.Torchvision {
			rn, ok := e.Core.(*ResNetCore)
			if !ok || (p.Module != "core" && p.Module != "") {
				return fmt.Errorf("encoder: LoadParts: %s: torchvision names apply to a ResNet core only (module \"core\")", p.Path)
			}
			opts.Rename = func(name string) string {
				return p.Prefix + rn.TorchvisionName(name[len(p.Prefix):])
			}
			opts.AllowUnexpected = true
		}
		r, err := checkpoint.Open(p.Path)
		if err != nil {
			return err
		}
		err = nn.Load(mod, r, opts)
		r.Close()
		if err != nil {
			return fmt.Errorf("encoder: %s: %w", p.Path, err)
		}
	}
	return nil
}

// Preset returns the architecture of one of EGG's models by name (see PresetNames),
// with the paper's sizes (section 6 of docs/egg-method.md) and identity input
// normalisation.
func Preset(name string) (Config, error) {
	switch name {
	case "v4_data_driven":
		stack := -1
		return Config{
			Name: name,
			Core: CoreConfig{SE2d: &SE2dConfig{
				InputChannels: 1, HiddenChannels: 96, InputKern: 9, HiddenKern: Kernels{5}, Layers: 5,
				DepthSeparable: true, FinalNonlinearity: true, Momentum: 0.9, GammaInput: 10,
				Stack: &stack, InputRegularizer: "LaplaceL2norm",
			}},
			Readout: ReadoutConfig{Neurons: 1244, Attention: &AttentionConfig{
				DropoutPos: 0.1, EmbedOutDim: 128, Heads: 1, KeyEmbedding: true, ValueEmbedding: true,
				Scale: true, Temperature: Temperature{Fixed: true, Value: 1}, UsePosEnc: true,
				GammaFeatures: 1, GammaQuery: 1,
			}},
			InputShape: []int{1, 100, 100},
			InputStd:   1,
		}, nil
	case "v4_task_driven":
		return Config{
			Name: name,
			Core: CoreConfig{ResNet: &ResNetConfig{
				ModelName: "resnet50_l2_eps0_1", LayerName: "layer3.0", InputChannels: 1,
				FinalBatchNorm: true, FinalNonlinearity: true, Momentum: 0.1,
			}},
			Readout: ReadoutConfig{Neurons: 1244, Gaussian: &GaussianConfig{
				GaussType: "isotropic", InitMuRange: 0.4, InitSigma: 0.6, Bias: true, GammaReadout: 3,
			}},
			EluOffset:  -1,
			InputShape: []int{1, 100, 100},
			InputStd:   1,
		}, nil
	}
	return Config{}, fmt.Errorf("encoder: no preset %q (have %v)", name, PresetNames())
}

// PresetNames lists the names Preset knows, sorted.
func PresetNames() []string {
	return slices.Sorted(slices.Values([]string{"v4_data_driven", "v4_task_driven"}))
}
