export default function Home() {
  return <main>stand-in page</main>;
}
