// Weight I/O tests: .pth round trip, strict/non-strict loading, pretrained backbones, bad files by message.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "common/error.h"
#include "models/weights.h"
#include "tests/testing/testing.h"

namespace segkd::models {
namespace {

using segkd::testing::TempDir;
using segkd::testing::tensors_close;

class WeightsTest : public segkd::testing::Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    torch::set_num_threads(1);
  }
  TempDir dir_;
};

ModelOptions r18() {
  ModelOptions cfg;
  cfg.arch = "pspnet";
  cfg.backbone = "resnet18_v1c";
  return cfg;
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Changes every parameter and buffer so a load can be told apart from a fresh initialisation.
void perturb(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& [key, tensor] : state_dict(module)) {
    if (tensor.is_floating_point()) tensor.add_(torch::randn_like(tensor) * 0.1);
    else tensor.add_(7);
  }
}

TEST_F(WeightsTest, RoundTripThroughPth) {
  Segmentor model(r18(), 19);
  perturb(*model);
  const auto path = dir_.file("model.pth");
  write_pth(state_dict(*model), path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const auto loaded = read_pth(path);
  const auto original = state_dict(*model);
  ASSERT_EQ(loaded.size(), original.size());
  for (const auto& [key, tensor] : original) {
    ASSERT_TRUE(loaded.count(key)) << key;
    EXPECT_EQ(loaded.at(key).dtype(), tensor.dtype()) << key;
    EXPECT_TRUE(torch::equal(loaded.at(key), tensor)) << key;
  }

  Segmentor fresh(r18(), 19);
  const auto report = load_state_dict(*fresh, loaded, /*strict=*/true, path);
  EXPECT_TRUE(report.ok()) << describe(report);
  model->eval();
  fresh->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({1, 3, 33, 45});
  EXPECT_TRUE(torch::equal(model->forward(images).logits, fresh->forward(images).logits));
}

TEST_F(WeightsTest, BuildModelLoadsWholeModelWeights) {
  Segmentor model(r18(), 19);
  perturb(*model);
  auto cfg = r18();
  cfg.weights = dir_.file("whole.pth");
  write_pth(state_dict(*model), cfg.weights);
  auto built = build_model(cfg, 19);
  const auto key = "decode_head.bottleneck.conv.weight";
  EXPECT_TRUE(torch::equal(state_dict(*built).at(key), state_dict(*model).at(key)));
  // Wrong class count: the conv_seg shapes differ, which strict loading must reject.
  SEGKD_EXPECT_THROW_MSG(build_model(cfg, 21), "decode_head.conv_seg.weight: file [19,128,1,1] vs model [21,128,1,1]");
}

TEST_F(WeightsTest, StrictLoadListsMissingUnexpectedAndMismatched) {
  Segmentor model(r18(), 19);
  auto state = state_dict(*model);
  state.erase("decode_head.conv_seg.bias");
  SEGKD_EXPECT_THROW_MSG(load_state_dict(*model, state, true, "ckpt.pth"),
                         "ckpt.pth: weights do not match the model: 1 missing (decode_head.conv_seg.bias)");

  state = state_dict(*model);
  state["backbone.fc.weight"] = torch::zeros({2});
  SEGKD_EXPECT_THROW_MSG(load_state_dict(*model, state, true, "ckpt.pth"), "1 unexpected (backbone.fc.weight)");

  state = state_dict(*model);
  state["backbone.stem.0.weight"] = torch::zeros({32, 3, 5, 5});
  SEGKD_EXPECT_THROW_MSG(load_state_dict(*model, state, true, "ckpt.pth"),
                         "1 mismatched (backbone.stem.0.weight: file [32,3,5,5] vs model [32,3,3,3])");

  // Many missing keys: counted, only the first few listed.
  StateDict partial;
  try {
    load_state_dict(*model, partial, true, "empty.pth");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    size_t expected = 0;
    for (const auto& item : state_dict(*model)) expected += item.first.find("num_batches_tracked") == std::string::npos;
    EXPECT_NE(msg.find(std::to_string(expected) + " missing ("), std::string::npos) << msg;
    EXPECT_NE(msg.find("..."), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }

  // Non-strict: loads what matches, reports the rest, and leaves unmatched tensors alone.
  state = state_dict(*Segmentor(r18(), 19));
  state.erase("decode_head.conv_seg.bias");
  state["extra"] = torch::ones({1});
  const auto untouched = state_dict(*model).at("decode_head.conv_seg.bias").clone();
  auto report = load_state_dict(*model, state, /*strict=*/false, "x.pth");
  EXPECT_EQ(report.missing, std::vector<std::string>{"decode_head.conv_seg.bias"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"extra"});
  EXPECT_TRUE(report.mismatched.empty());
  EXPECT_TRUE(torch::equal(state_dict(*model).at("decode_head.conv_seg.bias"), untouched));
  EXPECT_TRUE(torch::equal(state_dict(*model).at("decode_head.conv_seg.weight"), state.at("decode_head.conv_seg.weight")));
}

TEST_F(WeightsTest, MissingNumBatchesTrackedIsTolerated) {
  Segmentor model(r18(), 19);
  StateDict state;
  for (const auto& [key, t] : state_dict(*model)) {
    if (key.find("num_batches_tracked") == std::string::npos) state[key] = t;
  }
  EXPECT_TRUE(load_state_dict(*model, state, /*strict=*/true, "old.pth").ok());
}

TEST_F(WeightsTest, BadFilesAreReportedByWhatWasFound) {
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("absent.pth")), "absent.pth: cannot open");

  segkd::testing::write_text(dir_.file("text.pth"), "hello, I am not a checkpoint\n");
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("text.pth")), "text.pth: not a zip archive");

  segkd::testing::write_text(dir_.file("empty.pth"), "");
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("empty.pth")), "empty.pth: empty file");

  // Legacy torch.save (pickle protocol 2 header without the zip container).
  segkd::testing::write_text(dir_.file("legacy.pth"), std::string("\x80\x02\x8a\x0a", 4) + "garbage");
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("legacy.pth")), "legacy (pre-1.6, non-zip) torch.save format");

  // Truncated: a valid file cut in half loses its zip central directory.
  Segmentor model(r18(), 3);
  const auto good = dir_.file("good.pth");
  write_pth(state_dict(*model), good);
  const auto size = std::filesystem::file_size(good);
  std::filesystem::copy_file(good, dir_.file("cut.pth"));
  std::filesystem::resize_file(dir_.file("cut.pth"), size / 2);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("cut.pth")), "cut.pth: unreadable zip archive (truncated or damaged");

  // Wrong top-level type: a list of tensors.
  c10::List<at::Tensor> list;
  list.push_back(torch::ones({2}));
  write_bytes(dir_.file("list.pth"), torch::pickle_save(list));
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("list.pth")), "list.pth: top-level object is a list, expected a state_dict");

  // A single tensor.
  write_bytes(dir_.file("tensor.pth"), torch::pickle_save(torch::ones({2})));
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("tensor.pth")), "top-level object is a single tensor");

  // A dict without tensors.
  c10::Dict<std::string, int64_t> numbers;
  numbers.insert("epoch", 3);
  write_bytes(dir_.file("numbers.pth"), torch::pickle_save(numbers));
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("numbers.pth")), "dict holds no tensors and no \"state_dict\" entry (1 keys (epoch))");

  // A zip archive without data.pkl.
  {
    caffe2::serialize::PyTorchStreamWriter writer(dir_.file("other.zip"));
    const std::string payload = "not a pickle";
    writer.writeRecord("notes.txt", payload.data(), payload.size());
    writer.writeEndOfFile();
  }
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("other.zip")), "other.zip: zip archive has no data.pkl");
}

// ---- crafted pickles (model-zoo files are untrusted input) ---------------------------------------------------------

/// Pickle opcodes for hand-built data.pkl files.
std::string p_str(const std::string& s) { return std::string("\x8c") + static_cast<char>(s.size()) + s; }
std::string p_int(int64_t v) {
  std::string out("\x8a\x08", 2);
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * k)) & 0xFF));
  return out;
}
std::string p_u32(char op, uint32_t v) {
  std::string out(1, op);
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xFF));
  return out;
}
std::string p_tuple(const std::vector<int64_t>& v) {
  std::string out = "(";
  for (auto x : v) out += p_int(x);
  return out + "t";
}

/// {"w": _rebuild_tensor_v2(storage of `numel` floats, offset, size, stride)} as data.pkl.
std::string tensor_pickle(int64_t numel, int64_t offset, const std::vector<int64_t>& size,
                          const std::vector<int64_t>& stride) {
  std::string pk("\x80\x02}(", 4);
  pk += p_str("w") + "ctorch._utils\n_rebuild_tensor_v2\n(";
  pk += "(" + p_str("storage") + "ctorch\nFloatStorage\n" + p_str("0") + p_str("cpu") + p_int(numel) + "tQ";
  pk += p_int(offset) + p_tuple(size) + p_tuple(stride) + "\x89N" + "tRu.";
  return pk;
}

/// A torch.save-style zip holding `pickle` as data.pkl and `storage_bytes` zero bytes as data/0.
void write_zip(const std::string& path, const std::string& pickle, size_t storage_bytes) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  std::vector<char> zeros(storage_bytes, 0);
  writer.writeRecord("data/0", zeros.data(), zeros.size());
  writer.writeEndOfFile();
}

TEST_F(WeightsTest, CraftedTensorRecordsAreBoundsChecked) {
  const auto ok = dir_.file("ok.pth");
  write_zip(ok, tensor_pickle(6, 2, {2, 2}, {2, 1}), 24);
  auto state = read_pth(ok);
  EXPECT_EQ(state.at("w").sizes(), (std::vector<int64_t>{2, 2}));  // the crafting itself is right
  // Offset past the storage, and an offset near INT64_MAX that wraps the end-of-view computation.
  write_zip(dir_.file("offset.pth"), tensor_pickle(6, 5, {2, 2}, {2, 1}), 24);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("offset.pth")), "view reaches element 8 but its storage holds 6");
  write_zip(dir_.file("wrap.pth"), tensor_pickle(6, std::numeric_limits<int64_t>::max() - 1, {4}, {1}), 24);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("wrap.pth")), "overflows");
  // Sizes whose product of extents overflows.
  write_zip(dir_.file("size.pth"), tensor_pickle(6, 0, {int64_t{1} << 62, 4}, {4, 1}), 24);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("size.pth")), "overflows");
  // A storage element count whose byte size overflows.
  write_zip(dir_.file("numel.pth"), tensor_pickle(int64_t{1} << 62, 0, {1}, {1}), 24);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("numel.pth")), "storage 0 has an invalid element count");
  // Negative sizes.
  write_zip(dir_.file("neg.pth"), tensor_pickle(6, 0, {-1}, {1}), 24);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("neg.pth")), "negative or non-integer");
}

TEST_F(WeightsTest, DeeplyNestedPicklesAreRefusedWithoutCrashing) {
  // 100000 nested lists built bottom-up (] ... ] a ... a): refused by the nesting limit.
  std::string deep("\x80\x02", 2);
  deep += std::string(100000, ']') + std::string(99999, 'a') + ".";
  write_zip(dir_.file("deep.pth"), deep, 0);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("deep.pth")), "containers nested deeper than 512 levels at offset");
  // A chain built top-down through the memo (each list depth 2 when appended): 300000 levels must not overflow the
  // stack when the objects are freed.
  std::string chain("\x80\x02]]", 4);  // stack: [L1, L2]... L1 is the root
  chain += p_u32('r', 0) + "a" + p_u32('j', 0);  // L1.append(L2); push L2
  for (int i = 0; i < 300000; ++i) chain += "]" + p_u32('r', 0) + "a0" + p_u32('j', 0);
  chain += "0.";
  write_zip(dir_.file("chain.pth"), chain, 0);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("chain.pth")), "top-level object is a list");
}

TEST_F(WeightsTest, MalformedTextOpcodesNameTheirOffset) {
  write_zip(dir_.file("memo.pth"), std::string("\x80\x02]pabc\n.", 9), 0);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("memo.pth")), "opcode 'p' at offset 3: bad argument \"abc\" (not a number)");
  write_zip(dir_.file("get.pth"), std::string("\x80\x02]g\n.", 6), 0);
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.file("get.pth")), "opcode 'g' at offset 3: bad argument");
  SEGKD_EXPECT_THROW_MSG(read_pth(dir_.path()), ": is a directory, not a weight file");
}

TEST_F(WeightsTest, FuzzCorpusGoodFilesLoadBadFilesEndInAOneLineError) {
  // tests/fuzz/corpus/pth (tests/fuzz/make_corpus.py): the seed corpus of fuzz_pth, run through the reader here.
  const std::string corpus = segkd::testing::source_dir() + "/tests/fuzz/corpus/pth";
  int files = 0;
  for (const auto& name : segkd::testing::list_dir(corpus)) {
    const std::string path = corpus + "/" + name;
    ++files;
    if (name.rfind("good_", 0) == 0) {
      EXPECT_NO_THROW(read_pth(path)) << name;
      continue;
    }
    try {
      read_pth(path);
      ADD_FAILURE() << name << " loaded";
    } catch (const segkd::Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find('\n'), std::string::npos) << name << ": " << what;
      EXPECT_NE(what.find(path), std::string::npos) << name << ": " << what;
    }
  }
  EXPECT_GE(files, 10);
}

TEST_F(WeightsTest, NestedStateDictEntryIsUsed) {
  c10::impl::GenericDict inner(c10::StringType::get(), c10::TensorType::get());
  inner.insert("backbone.stem.0.weight", torch::full({2, 2}, 3.0));
  c10::impl::GenericDict outer(c10::StringType::get(), c10::AnyType::get());
  outer.insert("meta", c10::IValue(std::string("anything")));
  outer.insert("state_dict", inner);
  write_bytes(dir_.file("nested.pth"), torch::pickle_save(outer));
  const auto state = read_pth(dir_.file("nested.pth"));
  ASSERT_EQ(state.size(), 1u);
  EXPECT_TRUE(torch::equal(state.at("backbone.stem.0.weight"), torch::full({2, 2}, 3.0)));
}

TEST_F(WeightsTest, PretrainedBackboneFromMmcvAndTorchvisionNames) {
  Segmentor source(r18(), 19);
  perturb(*source);
  // mmcv resnet18_v1c style: backbone keys without prefix, plus a classifier.
  StateDict mmcv = state_dict(*source->backbone());
  mmcv["fc.weight"] = torch::zeros({1000, 512});
  mmcv["fc.bias"] = torch::zeros({1000});
  write_pth(mmcv, dir_.file("mmcv.pth"));
  Segmentor model(r18(), 19);
  auto report = load_pretrained_backbone(model, dir_.file("mmcv.pth"));
  EXPECT_TRUE(report.ok()) << describe(report);
  EXPECT_TRUE(torch::equal(state_dict(*model).at("backbone.layer4.1.conv2.weight"),
                           state_dict(*source).at("backbone.layer4.1.conv2.weight")));
  // The heads are not touched.
  EXPECT_FALSE(torch::equal(state_dict(*model).at("decode_head.conv_seg.weight"),
                            state_dict(*source).at("decode_head.conv_seg.weight")));

  // torchvision resnet18: 7x7 conv1/bn1 instead of the deep stem; layers share names.
  StateDict tv;
  for (const auto& [key, t] : state_dict(*source->backbone())) {
    if (key.rfind("stem.", 0) != 0) tv[key] = t;
  }
  tv["conv1.weight"] = torch::zeros({64, 3, 7, 7});
  tv["bn1.weight"] = torch::ones({64});
  tv["fc.weight"] = torch::zeros({1000, 512});
  write_pth(tv, dir_.file("tv.pth"));
  Segmentor model2(r18(), 19);
  report = load_pretrained_backbone(model2, dir_.file("tv.pth"));
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"bn1.weight", "conv1.weight"}));
  EXPECT_EQ(report.missing.size(), 15u);  // stem.{0,3,6}.weight + stem.{1,4,7}.{weight,bias,running_*}
  EXPECT_TRUE(torch::equal(state_dict(*model2).at("backbone.layer1.0.bn1.running_var"),
                           state_dict(*source).at("backbone.layer1.0.bn1.running_var")));

  // Weights of another network entirely: nothing matches.
  StateDict unrelated{{"encoder.weight", torch::zeros({3})}};
  write_pth(unrelated, dir_.file("unrelated.pth"));
  SEGKD_EXPECT_THROW_MSG(load_pretrained_backbone(model2, dir_.file("unrelated.pth")),
                         "unrelated.pth: no backbone weight matched");
}

}  // namespace
}  // namespace segkd::models
