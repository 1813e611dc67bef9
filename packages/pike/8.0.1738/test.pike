int main() {
  write("OK\n");
  return 0;
}
