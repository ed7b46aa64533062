// Images through `tpexec serve` on the golden llava model (tests/data/hf/llava-tiny, with the
// character tokenizer of tests/data/tokenizer/llava-chat): a chat message's image part gives the
// token ids that `tpexec PLAN --image` gives for the same prompt ids (the step-by-step path,
// independent of the engine), alone, beside other requests, with its prompt split into chunks
// across the image tokens and under a KV pool small enough to preempt. Two images behind the
// same text never share their image blocks in the prefix cache. Bad images are one 400 each
// while a text request beside them completes.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <map>
#include <tuple>

#include <boost/beast/core/detail/base64.hpp>

#include "tests/http/Served.h"
#include "tests/http/ServerFixture.h"
#include "tests/net/Spawned.h"
#include "tests/support/GoldenCases.h"

namespace tpc::test {
namespace {

using nlohmann::json;

constexpr int32_t kImageToken = 250;  // llava-tiny's image_token_index
constexpr int64_t kImageTokens = 16;  // its image_seq_length
constexpr int kNewTokens = 6;

std::string imagePath(const std::string& name) { return dataDir() + "/images/" + name; }

std::string base64Of(const std::string& bytes) {
  namespace base64 = boost::beast::detail::base64;
  std::string out(base64::encoded_size(bytes.size()), '\0');
  out.resize(base64::encode(out.data(), bytes.data(), bytes.size()));
  return out;
}

json imagePart(const std::string& url) {
  return {{"type", "image_url"}, {"image_url", {{"url", url}}}};
}

json filePart(const std::string& file) {
  const std::string type = file.ends_with(".png") ? "image/png" : "image/jpeg";
  return imagePart("data:" + type + ";base64," + base64Of(readFile(imagePath(file))));
}

// A greedy chat request: text, the image part, more text.
json chatWith(const json& image, const std::string& text = "What is in this picture?",
              int maxTokens = kNewTokens) {
  json content = json::array({{{"type", "text"}, {"text", text}}});
  if (!image.is_null()) content.push_back(image);
  content.push_back({{"type", "text"}, {"text", " Say it briefly."}});
  return {{"messages", {{{"role", "user"}, {"content", content}}}},
          {"max_tokens", maxTokens},
          {"temperature", 0},
          {"ignore_eos", true},
          {"return_token_ids", true}};
}

struct Answer {
  int status = 0;
  std::string error;
  std::vector<int64_t> promptIds, ids;
  int64_t cached = -1;
};

Answer post(int port, const json& body) {
  HttpReply r = postJson(port, "/v1/chat/completions", body);
  Answer a;
  a.status = r.status;
  if (r.status != 200) {
    a.error = r.body;
    return a;
  }
  json j = r.json();
  a.promptIds = j["choices"][0]["prompt_token_ids"].get<std::vector<int64_t>>();
  a.ids = j["choices"][0]["token_ids"].get<std::vector<int64_t>>();
  a.cached = j["usage"]["prompt_tokens_details"]["cached_tokens"];
  return a;
}

int64_t firstImagePosition(const std::vector<int64_t>& ids) {
  return std::find(ids.begin(), ids.end(), kImageToken) - ids.begin();
}

class ServeImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    plan_ = dir_->file("llava.w2.fb");
    CommandResult c = runCommand(binPath("tpc") + " compile " + dataDir() +
                                 "/hf/llava-tiny --world 2 --dtype f32 --quiet -o " + plan_);
    ASSERT_EQ(c.exitCode, 0) << c.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  // The step-by-step path on the same plan: the reference for every served answer (each pair
  // of image and prompt run once).
  static std::vector<int64_t> solo(const std::string& image, const std::vector<int64_t>& prompt,
                                   const std::string& plan = plan_, int newTokens = kNewTokens) {
    static std::map<std::tuple<std::string, std::string, std::vector<int64_t>, int>,
                    std::vector<int64_t>>
        memo;
    auto known = memo.find({plan, image, prompt, newTokens});
    if (known != memo.end()) return known->second;
    CommandResult r =
        runCommand(binPath("tpexec") + " " + plan_ + " --backend cpu --image " + imagePath(image) +
                   " --prompt-ids " + joinedIds(prompt) + " --max-new-tokens " +
                   std::to_string(newTokens) + " --ignore-eos --json");
    EXPECT_EQ(r.exitCode, 0) << r.output;
    if (r.exitCode != 0) return {};
    json out = json::parse(r.output.substr(r.output.find('{')));
    return memo[{plan, image, prompt, newTokens}] =
               out["generated_ids"].get<std::vector<int64_t>>();
  }

  // Chunks of 20 tokens put chunk boundaries inside the 16 image tokens; a pool of 32 blocks of
  // 4 tokens holds one request (about 80 tokens) but not three at once, so they preempt.
  static std::string serveArgs(const std::string& pool = "16KiB") {
    return plan_ + " --backend cpu --tokenizer " + dataDir() +
           "/tokenizer/llava-chat --max-batched-tokens 20 --kv-block-size 4 --kv-cache-memory " +
           pool + " --max-image-pixels 2400";
  }

  static TempDir* dir_;
  static std::string plan_;
};

TempDir* ServeImages::dir_ = nullptr;
std::string ServeImages::plan_;

TEST_F(ServeImages, AnImagePartGivesWhatTpexecImageGives) {
  TempDir tmp;
  Served s(tmp, serveArgs());
  ASSERT_GT(s.port, 0) << s.process.err();
  Answer a = post(s.port, chatWith(filePart("exact-32x32.png")));
  ASSERT_EQ(a.status, 200) << a.error;
  // The template's image part became the image token, expanded to image_seq_length copies, in
  // one run, after the text part before it.
  const int64_t first = firstImagePosition(a.promptIds);
  EXPECT_EQ(std::count(a.promptIds.begin(), a.promptIds.end(), kImageToken), kImageTokens);
  ASSERT_LE(first + kImageTokens, static_cast<int64_t>(a.promptIds.size()));
  EXPECT_TRUE(std::all_of(a.promptIds.begin() + first, a.promptIds.begin() + first + kImageTokens,
                          [](int64_t id) { return id == kImageToken; }));
  EXPECT_GT(first / 20, 0) << "the image should not sit in the first chunk";
  EXPECT_NE(first / 20, (first + kImageTokens - 1) / 20) << "the image should straddle chunks";
  EXPECT_EQ(a.ids, solo("exact-32x32.png", a.promptIds));
  // /tokenize places and expands the image part the same way.
  HttpReply tokens = postJson(s.port, "/tokenize",
                              {{"messages", chatWith(filePart("exact-32x32.png"))["messages"]}});
  ASSERT_EQ(tokens.status, 200) << tokens.body;
  EXPECT_EQ(tokens.json()["tokens"].get<std::vector<int64_t>>(), a.promptIds);
  // A JPEG (libjpeg-turbo), resized and cropped by the preprocessing.
  Answer jpeg = post(s.port, chatWith(filePart("wide-57x41.jpg")));
  ASSERT_EQ(jpeg.status, 200) << jpeg.error;
  EXPECT_EQ(jpeg.ids, solo("wide-57x41.jpg", jpeg.promptIds));
}

TEST_F(ServeImages, DifferentImagesBehindTheSameTextShareNoImageBlocks) {
  TempDir tmp;
  // A pool that keeps both requests' blocks cached.
  Served s(tmp, serveArgs("64KiB"));
  ASSERT_GT(s.port, 0) << s.process.err();
  Answer a = post(s.port, chatWith(filePart("exact-32x32.png")));
  Answer b = post(s.port, chatWith(filePart("small-rgba-19x27.png")));
  ASSERT_EQ(a.status, 200) << a.error;
  ASSERT_EQ(b.status, 200) << b.error;
  ASSERT_EQ(a.promptIds, b.promptIds);  // the same ids: only the image tells them apart
  const int64_t first = firstImagePosition(a.promptIds);
  // B found A's blocks of the text before the image, none from the image on.
  EXPECT_GT(b.cached, 0);
  EXPECT_LE(b.cached, first);
  EXPECT_NE(a.ids, b.ids);
  EXPECT_EQ(a.ids, solo("exact-32x32.png", a.promptIds));
  EXPECT_EQ(b.ids, solo("small-rgba-19x27.png", b.promptIds));
  // A again: its own image's blocks are reused, and the answer stays.
  Answer again = post(s.port, chatWith(filePart("exact-32x32.png")));
  ASSERT_EQ(again.status, 200) << again.error;
  EXPECT_GT(again.cached, first + kImageTokens - 1);
  EXPECT_EQ(again.ids, a.ids);
}

TEST_F(ServeImages, ConcurrentImageRequestsEachGiveWhatTheyGiveAloneThroughPreemption) {
  TempDir tmp;
  Served s(tmp, serveArgs() + " --no-prefix-caching");
  ASSERT_GT(s.port, 0) << s.process.err();
  const std::vector<std::string> images = {"exact-32x32.png", "small-rgba-19x27.png",
                                           "exact-32x32.png", "small-rgba-19x27.png"};
  // Long enough (about 40 iterations each) that they overlap however the threads start.
  constexpr int kLong = 30;
  const std::string text = "What is in this picture?";
  std::vector<std::future<Answer>> together;
  for (size_t i = 0; i < images.size(); ++i)
    together.push_back(std::async(std::launch::async, [&, i] {
      return post(s.port, chatWith(filePart(images[i]), text, kLong));
    }));
  auto plain =
      std::async(std::launch::async, [&] { return post(s.port, chatWith(nullptr, text, kLong)); });
  for (size_t i = 0; i < images.size(); ++i) {
    Answer a = together[i].get();
    ASSERT_EQ(a.status, 200) << a.error;
    EXPECT_EQ(a.ids, solo(images[i], a.promptIds, plan_, kLong)) << i;
  }
  Answer t = plain.get();
  ASSERT_EQ(t.status, 200) << t.error;
  EXPECT_EQ(std::count(t.promptIds.begin(), t.promptIds.end(), kImageToken), 0);
  EXPECT_GT(metricValue(httpRequest(s.port, "GET", "/metrics").body, "tpc:num_preemptions_total"),
            0)
      << "the pool was meant to be too small for all of them at once";
}

TEST_F(ServeImages, BadImagesAreOne400EachWhileATextRequestCompletes) {
  TempDir tmp;
  Served s(tmp, serveArgs());
  ASSERT_GT(s.port, 0) << s.process.err();
  // A long text request runs through all of them.
  json longText = chatWith(nullptr);
  longText["max_tokens"] = 40;
  auto text = std::async(std::launch::async, [&] { return post(s.port, longText); });
  std::string png = readFile(imagePath("exact-32x32.png"));
  struct Case {
    json part;
    std::string message;
  };
  const Case cases[] = {
      {imagePart("data:image/png;base64,iVBORw0K!!!not-base64"), "not valid base64"},
      {imagePart("data:image/png;base64," + base64Of(png.substr(0, 8) + std::string(64, 'x'))),
       "corrupt PNG"},
      {imagePart("data:image/png;base64," + base64Of("plain text, not an image")),
       "not a JPEG or PNG"},
      {imagePart("http://example.com/cat.png"), "only data: URLs are served"},
      {imagePart("data:image/gif;base64,R0lGODlhAQABAAAAACw="), "only data: URLs are served"},
      {filePart("gray-40x70.jpg"), "40x70 has 2800 pixels, more than the limit of 2400"},
      {{{"type", "image_url"}, {"image_url", 7}}, "needs 'image_url'"},
  };
  for (const Case& c : cases) {
    Answer a = post(s.port, chatWith(c.part));
    EXPECT_EQ(a.status, 400) << c.message;
    EXPECT_NE(a.error.find(c.message), std::string::npos) << a.error;
    EXPECT_EQ(json::parse(a.error)["error"]["message"].get<std::string>().find('\n'),
              std::string::npos);
  }
  // Two images in one request, and the image token written as text without an image.
  json two = chatWith(filePart("exact-32x32.png"));
  two["messages"][0]["content"].push_back(filePart("small-rgba-19x27.png"));
  Answer a = post(s.port, two);
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.error.find("one image at most"), std::string::npos) << a.error;
  Answer spoof = post(s.port, chatWith(nullptr, "look: <image>"));
  EXPECT_EQ(spoof.status, 400);
  EXPECT_NE(spoof.error.find("carries no image"), std::string::npos) << spoof.error;
  Answer t = text.get();
  ASSERT_EQ(t.status, 200) << t.error;
  EXPECT_EQ(t.ids.size(), 40u);
  EXPECT_EQ(httpRequest(s.port, "GET", "/health").status, 200);
}

// Across nodes the iteration, image patches included, reaches the worker's ranks through the
// control plane: a head of 2 ranks and a worker of 2 answer as `tpexec --image` at world 4.
TEST_F(ServeImages, AHeadWithOneWorkerServesImages) {
  TempDir tmp;
  std::string plan = tmp.file("llava.w4.fb");
  CommandResult c = runCommand(binPath("tpc") + " compile " + dataDir() +
                               "/hf/llava-tiny --world 4 --dtype f32 --quiet -o " + plan);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  std::unique_ptr<Spawned> worker;
  Served s(tmp,
           plan + " --backend cpu --tokenizer " + dataDir() +
               "/tokenizer/llava-chat --max-batched-tokens 20 --listen 127.0.0.1:0 --workers 1",
           [&](Spawned& head) {
             if (!head.waitForText("listening on tcp://", std::chrono::seconds(20))) return;
             worker = std::make_unique<Spawned>(
                 binPath("tpexec") + " --join 127.0.0.1:" + std::to_string(headPort(head.err())) +
                     " --local-world 2",
                 tmp.file("worker.log"));
           });
  ASSERT_TRUE(worker) << s.process.err();
  ASSERT_GT(s.port, 0) << s.process.err() << worker->log();
  Answer a = post(s.port, chatWith(filePart("exact-32x32.png")));
  ASSERT_EQ(a.status, 200) << a.error;
  EXPECT_EQ(a.ids, solo("exact-32x32.png", a.promptIds, plan));
}

// A text model refuses image parts by name; its text requests are served as before.
TEST(ServeImagesTextModel, AnImagePartIsA400) {
  TempDir tmp;
  std::string plan = tmp.file("llama.fb");
  CommandResult c = runCommand(binPath("tpc") + " compile " + dataDir() +
                               "/hf/llama-gqa-llama3rope --world 1 --dtype f32 --quiet -o " + plan);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  Served s(tmp, plan + " --backend cpu --tokenizer " + dataDir() + "/tokenizer/llava-chat");
  ASSERT_GT(s.port, 0) << s.process.err();
  Answer a = post(s.port, chatWith(filePart("exact-32x32.png")));
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.error.find("takes no images"), std::string::npos) << a.error;
}

}  // namespace
}  // namespace tpc::test
