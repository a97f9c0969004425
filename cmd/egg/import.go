package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"

	"github.com/spf13/cobra"

	"egg/checkpoint"
	"egg/encoder"
	"egg/tensor"
)

// importOptions are the flags of `egg import`.
type importOptions struct {
	weights     string
	coreWeights string
	nnvision    string
	fn          string
	preset      string
	neurons     int
	inputSize   int
	out         string
}

func newImportCmd(g *globalOptions) *cobra.Command {
	o := &importOptions{}
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Convert an nnvision / neuralpredictors checkpoint into an egg model file",
		Long: `import reads an encoding model's PyTorch state_dict (.pt, .pth.tar) or safetensors
file under nnvision's names (core.*, readout.*) and writes one egg model file
(safetensors with the architecture in its metadata) that every egg command takes.

The architecture comes from --nnvision, a JSON file with the model function's
"model_config" keyword arguments, its "data_info" and the function's name in "fn" or
"module" (the config.json of egg's reference vectors has this form), or from --preset
(v4_data_driven, v4_task_driven) with --neurons and --input-size. A task-driven model
whose ResNet core is stored apart, under torchvision's names, takes --core-weights.

Exit status: 0 on success, 1 when the import failed, 2 on a usage error.`,
		Example: `  egg import --weights v4_data_driven_1.pth.tar --preset v4_data_driven --neurons 1244 --out dd1.safetensors
  egg import --weights weights.pt --nnvision config.json --out model.safetensors`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runImport(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.weights, "weights", "", "the checkpoint to import")
	f.StringVar(&o.coreWeights, "core-weights", "", "a ResNet core stored apart under torchvision's names (task-driven models)")
	f.StringVar(&o.nnvision, "nnvision", "", "JSON file with model_config, data_info and fn (or module)")
	f.StringVar(&o.fn, "fn", "", "nnvision model function, when --nnvision has none: "+encoder.NNVisionDataDriven+" or "+encoder.NNVisionTaskDriven)
	f.StringVar(&o.preset, "preset", "", "architecture preset instead of --nnvision: v4_data_driven or v4_task_driven")
	f.IntVar(&o.neurons, "neurons", 0, "neurons of the model (with --preset)")
	f.IntVar(&o.inputSize, "input-size", 100, "input image size in pixels (with --preset)")
	f.StringVar(&o.out, "out", "", "the egg model file to write")
	return cmd
}

var modelFnRE = regexp.MustCompile(`(\w+)\(data_info`)

func (o *importOptions) config() (encoder.Config, error) {
	switch {
	case (o.nnvision == "") == (o.preset == ""):
		return encoder.Config{}, usagef("give --nnvision FILE or --preset NAME to describe the architecture")
	case o.preset != "":
		cfg, err := encoder.Preset(o.preset)
		if err != nil {
			return cfg, usageError{err}
		}
		if o.neurons <= 0 {
			return cfg, usagef("--preset needs --neurons (how many neurons the checkpoint predicts)")
		}
		cfg.Readout.Neurons = o.neurons
		cfg.InputShape = []int{1, o.inputSize, o.inputSize}
		return cfg, nil
	}
	b, err := os.ReadFile(o.nnvision)
	if err != nil {
		return encoder.Config{}, err
	}
	var spec struct {
		ModelConfig json.RawMessage `json:"model_config"`
		DataInfo    json.RawMessage `json:"data_info"`
		Fn          string          `json:"fn"`
		Module      string          `json:"module"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return encoder.Config{}, fmt.Errorf("%s: %w", o.nnvision, err)
	}
	fn := o.fn
	if fn == "" {
		fn = spec.Fn
	}
	if m := modelFnRE.FindStringSubmatch(spec.Module); fn == "" && m != nil {
		fn = m[1]
	}
	if fn == "" || spec.ModelConfig == nil || spec.DataInfo == nil {
		return encoder.Config{}, fmt.Errorf("%s needs model_config, data_info and fn (the nnvision model function); --fn can name it", o.nnvision)
	}
	return encoder.NNVisionConfig(fn, spec.ModelConfig, spec.DataInfo)
}

func runImport(_ context.Context, g *globalOptions, o *importOptions) error {
	if o.weights == "" || o.out == "" {
		return usagef("--weights and --out are required")
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	dev := tensor.CPU(g.threads)
	m, err := encoder.New(dev, cfg, nil)
	if err != nil {
		return err
	}
	parts := []encoder.Part{{Path: o.weights}}
	if o.coreWeights != "" {
		parts = []encoder.Part{{Path: o.weights, Module: "readout", Prefix: "readout."}, {Path: o.coreWeights, Module: "core", Torchvision: true}}
	}
	if err := encoder.LoadParts(m.(*encoder.Encoder), parts...); err != nil {
		return err
	}
	h, err := checkpoint.FileSHA256(o.weights)
	if err != nil {
		return err
	}
	meta := map[string]string{"egg.imported_from": o.weights, "egg.imported_sha256": h}
	if err := encoder.Save(o.out, m, meta); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %s, %d neurons, input %v\n", o.out, cfg.Arch(), m.Neurons(), cfg.InputShape)
	return nil
}
