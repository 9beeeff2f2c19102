package com.mycompany.app;

public class App {
    public static void main(String[] args) {
        System.out.println("Hello World!");
    }
}
