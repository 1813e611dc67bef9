class Test {
  static function main() {
    Sys.println("OK");
  }
}
