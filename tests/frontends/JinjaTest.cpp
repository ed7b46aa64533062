// The pieces of frontends/jinja on their own: lexing with whitespace control, number and JSON
// formatting, methods, filters, scoping, and errors that name the template line. Expected
// strings are what @huggingface/jinja prints for the same templates (JavaScript semantics:
// 10 / 5 is 2.0, 0.1 + 0.2 prints all 17 digits, strip() takes no argument).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "frontends/jinja/Lexer.h"
#include "frontends/jinja/Template.h"
#include "frontends/jinja/Value.h"
#include "tests/frontends/JinjaOracleUtil.h"

namespace tpc::jinja {
namespace {

std::string render(const std::string& source, const nlohmann::ordered_json& vars = {}) {
  Expected<Template> t = Template::parse(source);
  if (!t) return "PARSE ERROR " + t.errorMessage();
  Expected<std::string> out = t->render(vars.is_null() ? nlohmann::ordered_json::object() : vars);
  if (!out) return "ERROR " + out.errorMessage();
  return *out;
}

TEST(Jinja, NumbersPrintAsJavaScriptDoes) {
  EXPECT_EQ(render("{{ 0.1 + 0.2 }}|{{ 3.0 }}|{{ 2.5 }}|{{ 10 / 4 }}|{{ 10 / 5 }}|{{ 7 // -2 }}|"
                   "{{ -7 % 3 }}|{{ 2 ** -1 }}|{{ 1 / 3 }}"),
            "0.30000000000000004|3.0|2.5|2.5|2.0|-4|-1|0.5|0.3333333333333333");
  EXPECT_EQ(render("{{ 1.5 | string }}|{{ 100000000000000000000.0 }}|{{ 0.000001 }}|"
                   "{{ 0.0000001 }}|{{ -0.0 | tojson }}"),
            "1.5|100000000000000000000.0|0.000001|1e-7|0");
  EXPECT_EQ(formatNumber(1e21), "1e+21");
  EXPECT_EQ(formatNumber(-1.5e-9), "-1.5e-9");
  EXPECT_EQ(formatNumber(123456789012345680000.0), "123456789012345680000");
}

TEST(Jinja, TojsonSpacingAndKeyOrder) {
  nlohmann::ordered_json vars =
      nlohmann::ordered_json::parse(R"({"x": {"b": [1, 2.5, "é\n\"", null, true], "a": {}}})");
  EXPECT_EQ(render("{{ x }}|{{ x | tojson }}", vars),
            "{\"b\": [1, 2.5, \"é\\n\\\"\", null, true], \"a\": {}}|"
            "{\"b\": [1, 2.5, \"é\\n\\\"\", null, true], \"a\": {}}");
  EXPECT_EQ(render("{{ x | tojson(indent=2) }}", vars),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"é\\n\\\"\",\n    null,\n    true\n  ],\n"
            "  \"a\": {}\n}");
  EXPECT_EQ(render("{{ [1, [2, {}], {'a': []}] | tojson(indent=2) }}"),
            "[\n  1,\n  [\n    2,\n    {}\n  ],\n  {\n    \"a\": []\n  }\n]");
  EXPECT_EQ(render("{{ 'é' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\"");
}

TEST(Jinja, WhitespaceControlAsTransformersConfiguresIt) {
  // lstrip_blocks and trim_blocks: the indentation before a block tag and the newline after it go.
  EXPECT_EQ(render("  {% if true %}\n  yes\n  {% endif %}\nafter"), "  yes\nafter");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("{# c #}\n{{ 'x' }}\n"), "x");
  // The transformers-only generation tags are dropped.
  EXPECT_EQ(render("a{% generation %}b{% endgeneration %}c"), "abc");
}

TEST(Jinja, LexerKeepsTheOriginalLines) {
  std::vector<Token> tokens = tokenize("a\n{% if x %}\n\n{{ y }}");
  ASSERT_GE(tokens.size(), 6u);
  EXPECT_EQ(tokens[0].type, Tok::Text);
  EXPECT_EQ(tokens[1].type, Tok::OpenStatement);
  EXPECT_EQ(tokens[1].line, 2);
  EXPECT_EQ(tokens.back().type, Tok::CloseExpression);
  EXPECT_EQ(tokens.back().line, 4);
}

TEST(Jinja, StringMethodsFollowJavaScript) {
  EXPECT_EQ(render("{{ 'ÄbC straße'.upper() }}|{{ 'ÄbC'.lower() }}|{{ 'hello wORLD'.title() }}|"
                   "{{ 'hELLO'.capitalize() }}|{{ '  x\n'.strip() }}|{{ 'a,b,,c'.split(',') }}|"
                   "{{ '  a  b '.split() }}"),
            "ÄBC STRASSE|äbc|Hello WORLD|HELLO|x|[\"a\", \"b\", \"\", \"c\"]|[\"a\", \"b\"]");
  EXPECT_EQ(render("{{ 'héllo'|length }}|{{ '😀x'|length }}|{{ '😀x'[1:] }}|{{ 'abc'[-1] }}"),
            "5|3|x|c");
  EXPECT_EQ(render("{{ 'abcabc'.replace('b', 'X', 1) }}|{{ 'abc' | replace('', '-') }}"),
            "aXcabc|-a-b-c-");
  // strip's argument is ignored by the oracle: all whitespace goes.
  EXPECT_EQ(render("{{ '\n x \n'.strip('\n') }}"), "x");
}

TEST(Jinja, StatementsAndScopes) {
  EXPECT_EQ(render("{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}|{{ ns }}"),
            "2|{\"a\": 2}");
  EXPECT_EQ(render("{% for a, b in {'x': 1, 'y': 2}.items() %}{{ a }}={{ b }}"
                   "{{ ',' if not loop.last }}{% endfor %}"),
            "x=1,y=2");
  EXPECT_EQ(render("{% for x in [] %}no{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% macro m(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }}|{{ m(1, b=3) }}"),
            "1-2|1-3");
  EXPECT_EQ(render("{{ 'a' if false }}|{{ [1,2,3] | join('-') }}|{{ {'b': 1} | items | list }}|"
                   "{{ (1, 2) | length }}"),
            "|1-2-3|[[\"b\", 1]]|2");
  EXPECT_EQ(render("{% filter upper %}hi {{ 'there' }}{% endfilter %}"), "HI THERE");
  // A set inside a loop stays in the loop; a namespace carries the value out.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  // An iteration cut short by continue or break contributes no output, as in the oracle.
  EXPECT_EQ(render("{% for i in [1, 2, 3] %}{{ i }}{% if i == 2 %}{% continue %}{% endif %}."
                   "{% endfor %}"),
            "1.3.");
}

TEST(Jinja, EqualityIsJavaScriptsLooseEquality) {
  EXPECT_EQ(render("{{ '1' == 1 }}|{{ 1 == true }}|{{ none == none }}|{{ [1] == [1] }}|"
                   "{{ none == undefined }}"),
            "true|true|true|false|true");
  EXPECT_EQ(render("{{ 'a' ~ 1.0 ~ none }}"),
            "ERROR line 1: Cannot perform operation on null values");
}

TEST(Jinja, ValuesComeFromJson) {
  nlohmann::ordered_json v = nlohmann::ordered_json::parse(R"({"n": 3.0, "f": 0.5, "s": "x"})");
  EXPECT_EQ(render("{{ n is integer }}{{ f is number }}{{ n }}{{ f }}{{ s is string }}", v),
            "truetrue30.5true");
  EXPECT_EQ(render("{{ missing is defined }}{{ missing.attr is defined }}", v), "falsefalse");
}

// Malformed templates: one line that names the template line at fault; and the oracle, given
// the same template, fails as well.
TEST(Jinja, MalformedTemplatesNameTheLine) {
  struct Case {
    const char* source;
    int line;
    const char* words;
  };
  const Case cases[] = {
      {"ok\n{% if x %}\nnever closed", 2, "never closed"},
      {"{% for m in messages %}\n{{ m }}", 1, "'for' block"},
      {"line one\nline two {{ messages | frobnicate }}", 2, "frobnicate"},
      {"a\nb\n{{ 1 + }}", 3, "Unexpected token"},
      {"{{ 'unterminated }}", 1, "end of input"},
      {"x\n{# comment without end", 2, "comment"},
      {"\n\n{% endfor %}", 3, "endfor"},
      {"{% include 'other.jinja' %}", 1, "include"},
      {"{{ a b }}", 1, "closing expression"},
      {"\n{{ x is frobnicated }}", 2, "Unknown test"},
      {"{{ messages[0].content.startswith('x') }}", 1, "not a function"},
  };
  ASSERT_TRUE(test::jinjaOracleInstalled());
  test::TempDir dir;
  std::vector<test::OracleCase> oracleCases;
  for (size_t i = 0; i < std::size(cases); ++i) {
    std::string folder = dir.file("t" + std::to_string(i));
    std::filesystem::create_directory(folder);
    test::writeFile(folder + "/chat_template.jinja", cases[i].source);
    oracleCases.push_back(
        {folder, nlohmann::ordered_json::array(), nlohmann::ordered_json(), true});
  }
  std::vector<nlohmann::json> oracle = test::renderWithOracle(oracleCases);
  ASSERT_EQ(oracle.size(), std::size(cases));
  for (size_t i = 0; i < std::size(cases); ++i) {
    const Case& c = cases[i];
    EXPECT_TRUE(oracle[i].contains("error")) << c.source << " renders in the oracle";
    std::string out = render(c.source, {{"messages", nlohmann::ordered_json::array()}});
    EXPECT_TRUE(out.starts_with("PARSE ERROR ") || out.starts_with("ERROR ")) << c.source;
    EXPECT_NE(out.find("line " + std::to_string(c.line) + ":"), std::string::npos)
        << c.source << " -> " << out;
    EXPECT_NE(out.find(c.words), std::string::npos) << c.source << " -> " << out;
    EXPECT_EQ(out.find('\n'), std::string::npos) << out;
  }
}

TEST(Jinja, RunawayNestingAndRecursionFail) {
  EXPECT_NE(render("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}")
                .find("nests too deeply"),
            std::string::npos);
  EXPECT_NE(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}").find("recurses"),
            std::string::npos);
}

TEST(Jinja, RaiseExceptionAndStrftime) {
  EXPECT_EQ(render("a\n{{ raise_exception('bad ' ~ 2) }}"), "ERROR line 2: bad 2");
  std::string year = render("{{ strftime_now('%Y') }}");
  EXPECT_EQ(year.size(), 4u) << year;
  EXPECT_EQ(render("{{ strftime_now('%% %A') }}"), "% %A");
}

}  // namespace
}  // namespace tpc::jinja
