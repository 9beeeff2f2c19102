#include <iostream>
#include <thread>

int main() {
    std::thread t([] { std::cout << "pdfs listening on 8080" << std::endl; });
    t.join();
    return 0;
}
