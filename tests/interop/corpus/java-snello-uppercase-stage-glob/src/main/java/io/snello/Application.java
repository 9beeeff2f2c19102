package io.snello;

public class Application {
    public static void main(String[] args) {
        System.out.println("snello-api");
    }
}
